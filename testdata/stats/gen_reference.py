#!/usr/bin/env python3
"""Reference tail probabilities for the verifier's exact tests, computed with
mpmath at 60 significant digits (pip install mpmath). Writes reference.json
beside this file; verifier/stats/tests/reference.rs checks against it.

    python3 testdata/stats/gen_reference.py
    python3 testdata/stats/gen_reference.py --foreign   # only the tails of foreign schemes' statistics

The tails of foreign schemes' statistics (tracemark.interop's readers) are
the real-shape gamma tail, the weighted two-gamma tail and the normal tail.
"""
import json
import sys
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


def log10_gamma_upper_real(a, s):
    """log10 Q(a, s), the regularized upper incomplete gamma function, for real a > 0."""
    return mp.log10(mp.gammainc(mp.mpf(a), mp.mpf(s), mp.inf, regularized=True))


def log10_weighted_gamma_upper(n, a, b, total):
    """log10 P(a G + b G' >= total), G, G' ~ Gamma(n, 1) independent, a != b both positive: the
    negative-binomial mixture sum_j P(J = j) Q(2n + j, total / lo), summed at 60 digits until the
    rest of the negative-binomial mass (bounded by a geometric series: the pmf ratio falls) is below
    1e-70 of the sum."""
    lo, hi = sorted((mp.mpf(a), mp.mpf(b)))
    p = lo / hi
    q = 1 - p
    x = mp.mpf(total) / lo
    upper = mp.gammainc(2 * n, x, mp.inf, regularized=True)
    nb = p ** n
    total_sum, j = mp.mpf(0), 0
    while True:
        total_sum += nb * upper
        upper += mp.exp(-x + (2 * n + j) * mp.log(x) - mp.loggamma(2 * n + j + 1))
        nb *= (n + j) * q / (j + 1)
        j += 1
        ratio = (n + j) * q / (j + 1)
        if ratio < 1 and nb / (1 - ratio) < total_sum * mp.mpf(10) ** -70:
            return mp.log10(total_sum)


def foreign_cases():
    """The tails of foreign schemes' statistics."""
    real = []
    for a in ["0.5", "1.7", "3.7", "12.3", "50.5", "122.25", "1000.25"]:
        aa = mp.mpf(float(a))
        for z in [-3, -1, 0, 0.5, 1, 2, 3, 5, 8, 20, 80, 400]:
            s = aa + z * mp.sqrt(aa)
            if s > 0:
                s = float(s)
                real.append({"shape": float(aa), "s": s, "log10_p": mp.nstr(log10_gamma_upper_real(aa, s), 30)})
    weighted = []
    for n in [1, 2, 10, 100, 300]:
        for a, b in [("0.9", "0.1"), ("0.7", "0.3"), ("0.2", "0.8")]:
            aa, bb = mp.mpf(float(a)), mp.mpf(float(b))
            mean, sd = n * (aa + bb), mp.sqrt(n * (aa * aa + bb * bb))
            for z in [-2, 0, 1, 3, 8, 20, 60]:
                t = mean + z * sd
                if t > 0:
                    t = float(t)
                    l10 = log10_weighted_gamma_upper(n, aa, bb, t)
                    weighted.append({"n": n, "a": float(aa), "b": float(bb), "total": t, "log10_p": mp.nstr(l10, 30)})
    normal = []
    for z in [-8, -3, -1, -0.25, 0, 0.25, 1, 2.5, 5, 8, 12, 20, 38, 100, 1000]:
        normal.append({"z": float(z), "log10_p": mp.nstr(mp.log10(mp.ncdf(-mp.mpf(z))), 30)})
    return {"gamma_upper_real": real, "weighted_gamma_upper": weighted, "normal_upper": normal}


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
           "binomial_upper": cases_b, "gamma_upper": cases_g, **foreign_cases()}
    path = Path(__file__).resolve().parent / "reference.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    lows = [float(c["log10_p"]) for c in cases_b + cases_g]
    print(f"{len(cases_b)} binomial and {len(cases_g)} gamma cases; smallest log10 p = {min(lows):.1f}")


def main_foreign():
    """Rewrites only the foreign schemes' tails in reference.json."""
    path = Path(__file__).resolve().parent / "reference.json"
    out = json.loads(path.read_text())
    out.update(foreign_cases())
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(", ".join(f"{len(out[k])} {k}" for k in ("gamma_upper_real", "weighted_gamma_upper", "normal_upper")))


if __name__ == "__main__":
    main_foreign() if "--foreign" in sys.argv[1:] else main()
