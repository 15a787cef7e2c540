#!/usr/bin/env python3
"""Reference tail probabilities for the verifier's exact tests, computed with
mpmath at 60 significant digits (pip install mpmath). Writes reference.json
beside this file; verifier/stats/tests/reference.rs checks against it.

    python3 testdata/stats/gen_reference.py
"""
import json
from pathlib import Path

import mpmath as mp

mp.mp.dps = 60


def _log_binom_pmf(j, n, p):
    return mp.loggamma(n + 1) - mp.loggamma(j + 1) - mp.loggamma(n - j + 1) + j * mp.log(p) + (n - j) * mp.log(1 - p)


def _tail_sum(first_log, ratio, steps):
    """log of sum_{i>=0} t_i with t_0 = exp(first_log), t_{i+1} = t_i * ratio(i), at most `steps` terms."""
    total, term = mp.mpf(1), mp.mpf(1)
    for i in range(steps):
        term *= ratio(i)
        total += term
        if term < total * mp.mpf(10) ** (-mp.mp.dps - 5):
            break
    return first_log + mp.log(total)


def log10_binomial_upper(k, n, p):
    """log10 P(X >= k), X ~ Binomial(n, p), by exact summation at 60 digits."""
    if k == 0:
        return mp.mpf(0)
    q = 1 - p
    if k > n * p:
        ln = _tail_sum(_log_binom_pmf(k, n, p), lambda i: mp.mpf(n - (k + i)) / (k + i + 1) * p / q, n - k)
    else:
        m = k - 1
        lower = _tail_sum(_log_binom_pmf(m, n, p), lambda i: mp.mpf(m - i) / (n - (m - i) + 1) * q / p, m)
        ln = mp.log(1 - mp.exp(lower))
    return ln / mp.log(10)


def log10_gamma_upper(n, s):
    """log10 P(Gamma(n, 1) >= s) = log10 P(Poisson(s) <= n - 1), by exact summation."""
    s = mp.mpf(s)
    m = n - 1
    lp = lambda j: -s + j * mp.log(s) - mp.loggamma(j + 1)
    if s > m:
        ln = _tail_sum(lp(m), lambda i: mp.mpf(m - i) / s, m)
    else:
        upper = _tail_sum(lp(n), lambda i: s / (n + i + 1), 10 ** 9)
        ln = mp.log(1 - mp.exp(upper))
    return ln / mp.log(10)


def main():
    cases_b, cases_g = [], []
    for n in [1, 2, 10, 37, 100, 1000, 10_000, 100_000, 1_000_000]:
        for p in ["0.25", "0.5", "0.1", "0.0625", "0.9"]:
            pp = mp.mpf(float(p))  # exactly the double the Rust test reads
            mean, sd = n * pp, mp.sqrt(n * pp * (1 - pp))
            ks = {0, 1, n, max(0, n - 1), int(mean), int(mean) + 1}
            for z in [-3, -1, 0.5, 1, 2, 3, 5, 8, 12, 20, 40, 80, 200]:
                ks.add(int(min(n, max(0, mean + z * sd))))
            for k in sorted(ks):
                l10 = log10_binomial_upper(k, n, pp)
                cases_b.append({"n": n, "k": k, "p": float(pp), "log10_p": mp.nstr(l10, 30)})
    for n in [1, 2, 10, 100, 1000, 10_000, 100_000, 1_000_000]:
        sd = mp.sqrt(n)
        ss = {mp.mpf(0.5) * n, mp.mpf(n), mp.mpf(n) + 1}
        for z in [-3, -1, 0.5, 1, 2, 3, 5, 8, 12, 20, 40, 80, 200, 1000]:
            s = n + z * sd
            if s > 0:
                ss.add(s)
        ss.add(mp.mpf(10) * n)
        ss.add(mp.mpf(30) * n + 50)
        for s in sorted(ss):
            s = float(s)  # the case is defined by the double the Rust test reads
            l10 = log10_gamma_upper(n, s)
            cases_g.append({"n": n, "s": s, "log10_p": mp.nstr(l10, 30)})
    out = {"generator": "testdata/stats/gen_reference.py (mpmath %s, 60 digits)" % mp.__version__,
           "binomial_upper": cases_b, "gamma_upper": cases_g}
    path = Path(__file__).resolve().parent / "reference.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    lows = [float(c["log10_p"]) for c in cases_b + cases_g]
    print(f"{len(cases_b)} binomial and {len(cases_g)} gamma cases; smallest log10 p = {min(lows):.1f}")


if __name__ == "__main__":
    main()
