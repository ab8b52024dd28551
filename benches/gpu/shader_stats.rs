//! The driver's own statistics of the response kernels (registers, instructions,
//! spills, as the driver names them), read through VK_KHR_pipeline_executable_properties,
//! which wgpu does not expose: the shaders go through naga exactly as
//! `GpuEvaluator` sends them (the sums' file before response.wgsl, the overrides of a
//! shape substituted, the same SPIR-V options as wgpu-hal's Vulkan backend) and are
//! compiled by a bare Vulkan device with statistics captured.
//!
//! ```text
//! cargo run --release --example shader_stats -- [--periods 52] [--lmax 13] [--wg 256] [--ir]
//! ```
//!
//! One block a variant (default; bounded loops; the general walk; tree sums) and entry
//! point (`constant_form`, `from_terms`, `time_varying`), on every adapter that has the
//! extension. `--ir` also prints the internal representations the driver offers.
use ash::vk;
use mmm_budget::eval::{RESPONSE_WGSL, SUMS_SUBGROUP_WGSL, SUMS_TREE_WGSL};
use std::ffi::CStr;
use wgpu::naga;

struct Args {
    periods: u32,
    lmax: u32,
    wg: u32,
    ir: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        periods: 52,
        lmax: 13,
        wg: 256,
        ir: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut number = |name: &str| -> Result<u32, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse().map_err(|_| format!("{name}: not a count: {v}"))
        };
        match flag.as_str() {
            "--periods" => a.periods = number("--periods")?,
            "--lmax" => a.lmax = number("--lmax")?,
            "--wg" => a.wg = number("--wg")?,
            "--ir" => a.ir = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// One way of compiling the kernels.
struct Variant {
    name: &'static str,
    loop_bounding: bool,
    geometric: bool,
    tree: bool,
}

/// SPIR-V of `entry` for geometric adstock first (normalized), logistic saturation,
/// constant patterns, as `GpuEvaluator::new` would send it.
fn spirv(a: &Args, v: &Variant, entry: &str) -> Result<Vec<u32>, String> {
    let sums = if v.tree {
        SUMS_TREE_WGSL
    } else {
        SUMS_SUBGROUP_WGSL
    };
    let src = format!("{sums}\n{RESPONSE_WGSL}");
    let module = naga::front::wgsl::parse_str(&src).map_err(|e| e.emit_to_string(&src))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| format!("{e:?}"))?;
    let tb = 8.0;
    let shw = if v.tree {
        3.0 * a.wg as f64
    } else {
        // Subgroups of at least 4 invocations.
        2.0 * tb * (a.wg / 4) as f64
    };
    let constants: naga::back::PipelineConstants = [
        ("ADSTOCK", 0.0),
        ("SATURATION", 0.0),
        ("ADSTOCK_FIRST", 1.0),
        ("NORMALIZE", 1.0),
        ("L_MAX", a.lmax as f64),
        ("KERNEL", a.lmax as f64),
        ("N_PERIODS", a.periods as f64),
        ("N_ADSTOCK", 1.0),
        ("N_SATURATION", 2.0),
        ("PACKED_F16", 0.0),
        ("HISTORY", 0.0),
        ("GEOMETRIC", if v.geometric { 1.0 } else { 0.0 }),
        ("WG", a.wg as f64),
        (
            "SHW",
            if entry == "time_varying" {
                shw.max(tb * a.wg as f64)
            } else {
                shw
            },
        ),
    ]
    .into_iter()
    .map(|(k, x)| (k.to_string(), x))
    .collect();
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((naga::ShaderStage::Compute, entry)),
        &constants,
    )
    .map_err(|e| format!("{e:?}"))?;
    let options = naga::back::spv::Options {
        lang_version: (1, 3),
        force_loop_bounding: v.loop_bounding,
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: naga::proc::BoundsCheckPolicy::Restrict,
            buffer: naga::proc::BoundsCheckPolicy::Unchecked,
            image_load: naga::proc::BoundsCheckPolicy::Unchecked,
            binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
        },
        // As wgpu-hal with `zero_initialize_workgroup_memory: false` (GpuEvaluator's).
        zero_initialize_workgroup_memory: naga::back::spv::ZeroInitializeWorkgroupMemoryMode::None,
        ..Default::default()
    };
    let pipeline = naga::back::spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: entry.to_string(),
    };
    naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
        .map_err(|e| format!("{e:?}"))
}

fn text(chars: &[std::ffi::c_char]) -> String {
    // The driver's strings are NUL-terminated within their arrays.
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("shader_stats: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&a) {
        eprintln!("shader_stats: {e}");
        std::process::exit(1);
    }
}

fn run(a: &Args) -> Result<(), String> {
    let vk_err = |what: &'static str| move |e: vk::Result| format!("{what}: {e}");
    // SAFETY: the Vulkan calls below follow the specification's valid usage: every
    // handle is created here from the one before and destroyed in reverse order.
    unsafe {
        let entry = ash::Entry::load().map_err(|e| format!("no Vulkan loader: {e}"))?;
        let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_1);
        let instance = entry
            .create_instance(
                &vk::InstanceCreateInfo::default().application_info(&app),
                None,
            )
            .map_err(vk_err("vkCreateInstance"))?;
        let ext = ash::khr::pipeline_executable_properties::NAME;
        for pd in instance
            .enumerate_physical_devices()
            .map_err(vk_err("vkEnumeratePhysicalDevices"))?
        {
            let props = instance.get_physical_device_properties(pd);
            let name = text(&props.device_name);
            let has = instance
                .enumerate_device_extension_properties(pd)
                .map_err(vk_err("vkEnumerateDeviceExtensionProperties"))?
                .iter()
                .any(|e| e.extension_name_as_c_str() == Ok(ext));
            println!(
                "{name}: N = {}, L = {}, workgroup {} (geometric, logistic, adstock first, constant patterns){}",
                a.periods,
                a.lmax,
                a.wg,
                if has {
                    String::new()
                } else {
                    format!("; no {}: compiled only", ext.to_string_lossy())
                }
            );
            device_stats(&instance, pd, a, has)?;
        }
        instance.destroy_instance(None);
    }
    Ok(())
}

unsafe fn device_stats(
    instance: &ash::Instance,
    pd: vk::PhysicalDevice,
    a: &Args,
    has: bool,
) -> Result<(), String> {
    let vk_err = |what: &'static str| move |e: vk::Result| format!("{what}: {e}");
    let family = unsafe { instance.get_physical_device_queue_family_properties(pd) }
        .iter()
        .position(|q| q.queue_flags.contains(vk::QueueFlags::COMPUTE))
        .ok_or("no compute queue")? as u32;
    let priorities = [1.0];
    let queues = [vk::DeviceQueueCreateInfo::default()
        .queue_family_index(family)
        .queue_priorities(&priorities)];
    let names = [ash::khr::pipeline_executable_properties::NAME.as_ptr()];
    let mut executable = vk::PhysicalDevicePipelineExecutablePropertiesFeaturesKHR::default()
        .pipeline_executable_info(true);
    let mut info = vk::DeviceCreateInfo::default().queue_create_infos(&queues);
    if has {
        info = info
            .enabled_extension_names(&names)
            .push_next(&mut executable);
    }
    let device =
        unsafe { instance.create_device(pd, &info, None) }.map_err(vk_err("vkCreateDevice"))?;
    let stats = ash::khr::pipeline_executable_properties::Device::new(instance, &device);
    let binding = |i: u32, ty: vk::DescriptorType| {
        vk::DescriptorSetLayoutBinding::default()
            .binding(i)
            .descriptor_type(ty)
            .descriptor_count(1)
            .stage_flags(vk::ShaderStageFlags::COMPUTE)
    };
    let set0: Vec<_> = (0..8)
        .map(|i| {
            binding(
                i,
                if i == 0 {
                    vk::DescriptorType::UNIFORM_BUFFER
                } else {
                    vk::DescriptorType::STORAGE_BUFFER
                },
            )
        })
        .collect();
    let set1 = [binding(0, vk::DescriptorType::STORAGE_BUFFER)];
    let layouts = [&set0[..], &set1[..]].map(|b| unsafe {
        device.create_descriptor_set_layout(
            &vk::DescriptorSetLayoutCreateInfo::default().bindings(b),
            None,
        )
    });
    let layouts: Vec<vk::DescriptorSetLayout> = layouts
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(vk_err("vkCreateDescriptorSetLayout"))?;
    let pipeline_layout = unsafe {
        device.create_pipeline_layout(
            &vk::PipelineLayoutCreateInfo::default().set_layouts(&layouts),
            None,
        )
    }
    .map_err(vk_err("vkCreatePipelineLayout"))?;
    let variants = [
        Variant {
            name: "default",
            loop_bounding: false,
            geometric: true,
            tree: false,
        },
        Variant {
            name: "bounded loops",
            loop_bounding: true,
            geometric: true,
            tree: false,
        },
        Variant {
            name: "general walk",
            loop_bounding: false,
            geometric: false,
            tree: false,
        },
        Variant {
            name: "general walk, bounded loops",
            loop_bounding: true,
            geometric: false,
            tree: false,
        },
        Variant {
            name: "tree sums",
            loop_bounding: false,
            geometric: true,
            tree: true,
        },
    ];
    for v in &variants {
        for entry in ["constant_form", "from_terms", "time_varying"] {
            if entry != "constant_form" && v.name != "default" {
                continue;
            }
            let words = spirv(a, v, entry)?;
            let module = unsafe {
                device
                    .create_shader_module(&vk::ShaderModuleCreateInfo::default().code(&words), None)
            }
            .map_err(vk_err("vkCreateShaderModule"))?;
            let name = std::ffi::CString::new(entry).map_err(|e| e.to_string())?;
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(&name);
            let flags = if has {
                vk::PipelineCreateFlags::CAPTURE_STATISTICS_KHR
                    | vk::PipelineCreateFlags::CAPTURE_INTERNAL_REPRESENTATIONS_KHR
            } else {
                vk::PipelineCreateFlags::empty()
            };
            let create = vk::ComputePipelineCreateInfo::default()
                .flags(flags)
                .stage(stage)
                .layout(pipeline_layout);
            let pipeline = unsafe {
                device.create_compute_pipelines(vk::PipelineCache::null(), &[create], None)
            }
            .map_err(|(_, e)| format!("vkCreateComputePipelines ({entry}, {}): {e}", v.name))?[0];
            println!("\n== {entry}, {} ({} SPIR-V words)", v.name, words.len());
            let executables = if !has {
                Vec::new()
            } else {
                unsafe {
                    stats.get_pipeline_executable_properties(
                        &vk::PipelineInfoKHR::default().pipeline(pipeline),
                    )
                }
                .map_err(vk_err("vkGetPipelineExecutablePropertiesKHR"))?
            };
            for (i, e) in executables.iter().enumerate() {
                println!(
                    "  executable {i}: {} ({}), subgroup size {}",
                    text(&e.name),
                    text(&e.description),
                    e.subgroup_size
                );
                let which = vk::PipelineExecutableInfoKHR::default()
                    .pipeline(pipeline)
                    .executable_index(i as u32);
                for s in unsafe { stats.get_pipeline_executable_statistics(&which) }
                    .map_err(vk_err("vkGetPipelineExecutableStatisticsKHR"))?
                {
                    let value = match s.format {
                        vk::PipelineExecutableStatisticFormatKHR::BOOL32 => {
                            format!("{}", unsafe { s.value.b32 } != 0)
                        }
                        vk::PipelineExecutableStatisticFormatKHR::INT64 => {
                            format!("{}", unsafe { s.value.i64 })
                        }
                        vk::PipelineExecutableStatisticFormatKHR::UINT64 => {
                            format!("{}", unsafe { s.value.u64 })
                        }
                        _ => format!("{}", unsafe { s.value.f64 }),
                    };
                    println!("    {}: {value}  ({})", text(&s.name), text(&s.description));
                }
                if a.ir {
                    unsafe { internal(&stats, &which)? };
                }
            }
            unsafe {
                device.destroy_pipeline(pipeline, None);
                device.destroy_shader_module(module, None);
            }
        }
    }
    unsafe {
        device.destroy_pipeline_layout(pipeline_layout, None);
        for l in layouts {
            device.destroy_descriptor_set_layout(l, None);
        }
        device.destroy_device(None);
    }
    Ok(())
}

/// The driver's internal representations of one executable, as text where it gives
/// text (two calls: sizes, then the data).
unsafe fn internal(
    stats: &ash::khr::pipeline_executable_properties::Device,
    which: &vk::PipelineExecutableInfoKHR,
) -> Result<(), String> {
    let vk_err = |what: &'static str| move |e: vk::Result| format!("{what}: {e}");
    let sized = unsafe { stats.get_pipeline_executable_internal_representations(which) }
        .map_err(vk_err("vkGetPipelineExecutableInternalRepresentationsKHR"))?;
    let mut reps = sized;
    let mut bufs: Vec<Vec<u8>> = reps.iter().map(|r| vec![0u8; r.data_size]).collect();
    for (r, b) in reps.iter_mut().zip(&mut bufs) {
        r.p_data = b.as_mut_ptr().cast();
    }
    let mut count = reps.len() as u32;
    let fp = stats
        .fp()
        .get_pipeline_executable_internal_representations_khr;
    let res = unsafe { fp(stats.device(), which, &mut count, reps.as_mut_ptr()) };
    if res != vk::Result::SUCCESS && res != vk::Result::INCOMPLETE {
        return Err(format!(
            "vkGetPipelineExecutableInternalRepresentationsKHR: {res}"
        ));
    }
    for (r, b) in reps.iter().zip(&bufs).take(count as usize) {
        println!(
            "    --- {} ({}), {} bytes{}",
            text(&r.name),
            text(&r.description),
            r.data_size,
            if r.is_text == vk::TRUE {
                ""
            } else {
                ", binary"
            }
        );
        if r.is_text == vk::TRUE {
            let s = CStr::from_bytes_until_nul(b)
                .map(|c| c.to_string_lossy().into_owned())
                .unwrap_or_default();
            println!("{s}");
        }
    }
    Ok(())
}
