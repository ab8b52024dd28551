"""Time a jitted JAX implementation of the same objective and gradient: the mean over
draws of Σ_c τ Σ_(t<N+L) β (1 − e^(−λ a))/(1 + e^(−λ a)) with a the normalised
geometric adstock of a constant per-period spend, written the straightforward way
(convolution by shifted slices, fused by XLA). It materialises a D × (N+L) × n array,
which is why it runs out of memory at D = 100,000 on an 80 GB GPU.

Prints one JSON line: {"backend", "draws", "cells", "periods", "l_max",
"ms_per_value_and_grad", "value"} (or an "error").

    pip install -U "jax[cuda12]"     # on the GPU machine; plain `jax` for the CPU
    python benches/peers/jax_objective.py --draws 20000 --cells 1000 --periods 52 --lmax 13
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=20000)
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--periods", type=int, default=52)
    ap.add_argument("--lmax", type=int, default=13)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    D, n, N, L = a.draws, a.cells, a.periods, a.lmax
    rng = np.random.default_rng(7)
    alpha = jnp.asarray(rng.uniform(0.2, 0.7, (D, n)), jnp.float32)
    lam = jnp.asarray(rng.uniform(0.5, 3.0, (D, n)), jnp.float32)
    beta = jnp.asarray(rng.uniform(0.05, 0.4, (D, n)), jnp.float32)
    scale = jnp.asarray(rng.uniform(50, 500, n), jnp.float32)
    tau = 1000.0

    def objective(x):
        spend = jnp.concatenate([jnp.broadcast_to(x / scale, (N, n)), jnp.zeros((L, n))])  # (N+L, n)
        lags = jnp.arange(L, dtype=jnp.float32)
        w = alpha[:, None, :] ** lags[None, :, None]  # (D, L, n)
        w = w / w.sum(axis=1, keepdims=True)
        a = jnp.zeros((D, N + L, n))
        for l in range(L):  # shifted slices
            shifted = jnp.concatenate([jnp.zeros((l, n)), spend[: N + L - l]])
            a = a + w[:, l, None, :] * shifted[None]
        e = jnp.exp(-lam[:, None, :] * a)
        g = beta[:, None, :] * (1 - e) / (1 + e)
        return tau * g.sum(axis=(1, 2)).mean()

    f = jax.jit(jax.value_and_grad(objective))
    x = jnp.full((n,), 100.0, jnp.float32)
    try:
        v, gr = f(x)
        jax.block_until_ready(gr)
        t = time.perf_counter()
        for _ in range(a.repeats):
            v, gr = f(x)
        jax.block_until_ready(gr)
        ms = (time.perf_counter() - t) / a.repeats * 1e3
        out = {"ms_per_value_and_grad": ms, "value": float(v)}
    except Exception as e:  # out of memory at large D
        out = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
    print(json.dumps({"backend": jax.default_backend(), "draws": D, "cells": n, "periods": N, "l_max": L, **out}))


if __name__ == "__main__":
    main()
