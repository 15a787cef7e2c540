//! Bindings of `tracemark_core::contract`: what a scheme states about itself.

use pyo3::prelude::*;
use tracemark_core::{Contract, Generation, Null};
use tracemark_verifier::stats;

use crate::errors::{EmptyInputError, InvalidParameterError, TracemarkError};

/// How a scheme takes part in sampling.
///
/// `BIAS`: the scheme adds a keyed bias to the logits (`Scheme.bias` computes
/// it alone) and the caller's sampler runs as usual. `DISTRIBUTION`: the
/// scheme replaces the row with its own sampling distribution; sample it at
/// temperature 1 without top-k or top-p. `SELECTION`: the scheme selects the
/// token itself (one logit stays finite).
#[pyclass(name = "Generation", module = "tracemark", eq, eq_int, frozen, hash)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PyGeneration {
    #[pyo3(name = "BIAS")]
    Bias,
    #[pyo3(name = "DISTRIBUTION")]
    Distribution,
    #[pyo3(name = "SELECTION")]
    Selection,
}

impl PyGeneration {
    fn of(generation: Generation) -> PyResult<Self> {
        match generation {
            Generation::Bias => Ok(Self::Bias),
            Generation::Distribution => Ok(Self::Distribution),
            Generation::Selection => Ok(Self::Selection),
            // A contract added to the core after these bindings: say so rather than guess.
            other => Err(TracemarkError::new_err(format!(
                "generation contract {other:?} is not known to this version of the Python bindings"
            ))),
        }
    }

    fn core(self) -> Generation {
        match self {
            Self::Bias => Generation::Bias,
            Self::Distribution => Generation::Distribution,
            Self::Selection => Generation::Selection,
        }
    }
}

#[pymethods]
impl PyGeneration {
    /// Whether the scheme decides the sampling distribution itself, so that the
    /// caller must sample the processed row as it is (temperature 1, no top-k
    /// or top-p) for the watermark to hold.
    #[getter]
    fn controls_sampling(&self) -> bool {
        self.core().controls_sampling()
    }
}

/// The null distribution of one scored observation's score: Binomial(`trials`,
/// `p`) for counting schemes (`distribution == "binomial"`), Exponential(1)
/// for `gumbel` (`distribution == "exponential"`, `trials` and `p` None).
#[pyclass(name = "Null", module = "tracemark", frozen)]
pub(crate) struct PyNull {
    inner: Null,
}

#[pymethods]
impl PyNull {
    /// "binomial" or "exponential".
    #[getter]
    fn distribution(&self) -> PyResult<&'static str> {
        match self.inner {
            Null::Binomial { .. } => Ok("binomial"),
            Null::Exponential => Ok("exponential"),
            other => Err(TracemarkError::new_err(format!(
                "null distribution {other:?} is not known to this version of the Python bindings"
            ))),
        }
    }

    /// Bernoulli draws per observation (binomial only).
    #[getter]
    fn trials(&self) -> Option<u32> {
        match self.inner {
            Null::Binomial { trials, .. } => Some(trials),
            _ => None,
        }
    }

    /// Success probability of one draw (binomial only).
    #[getter]
    fn p(&self) -> Option<f64> {
        match self.inner {
            Null::Binomial { p, .. } => Some(p),
            _ => None,
        }
    }

    /// The mean and standard deviation of the total over `n` observations.
    fn total_moments(&self, n: u64) -> (f64, f64) {
        self.inner.total_moments(n)
    }

    /// The distribution of the total over `n` observations, in words.
    fn total(&self, n: u64) -> String {
        self.inner.total(n)
    }

    /// The name of the exact test of the total, given the statistic's name.
    fn test_name(&self, statistic: &str) -> String {
        self.inner.test_name(statistic)
    }

    /// The null of a score that counts successes among `trials` independent
    /// Bernoulli(`p`) draws (for detectors of watermarks that are not
    /// tracemark schemes, e.g. `tracemark.interop`).
    #[staticmethod]
    fn binomial(trials: u32, p: f64) -> PyResult<Self> {
        if trials == 0 {
            return Err(InvalidParameterError::new_err(
                "binomial null: trials must be at least 1",
            ));
        }
        if !(p > 0.0 && p < 1.0) {
            return Err(InvalidParameterError::new_err(format!(
                "binomial null: p must be in (0, 1), got {p}"
            )));
        }
        Ok(Self {
            inner: Null::Binomial { trials, p },
        })
    }

    /// The null of an Exponential(1) score (the total over `n` is Gamma(`n`, 1)).
    #[staticmethod]
    fn exponential() -> Self {
        Self {
            inner: Null::Exponential,
        }
    }

    /// `log10 P(T >= total)` for the total `T` over `n` scored observations:
    /// the exact tail the verifier tests (binomial upper tail of an integer
    /// count, or the Gamma(`n`, 1) upper tail), in log space, finite far
    /// below 1e-308.
    fn log10_upper(&self, n: u64, total: f64) -> PyResult<f64> {
        if n == 0 {
            return Err(EmptyInputError::new_err("no scored observation to test (n = 0)"));
        }
        if !total.is_finite() {
            return Err(InvalidParameterError::new_err(format!(
                "total must be finite, got {total}"
            )));
        }
        let ln_p = match self.inner {
            Null::Binomial { trials, p } => {
                let draws = n * u64::from(trials);
                if total < 0.0 || total.fract() != 0.0 || total > draws as f64 {
                    return Err(InvalidParameterError::new_err(format!(
                        "a binomial total is a whole count in [0, {draws}], got {total}"
                    )));
                }
                // Exact: `total` is a whole number not above `draws` (checked above).
                stats::ln_binomial_upper(total as u64, draws, p)
            }
            Null::Exponential => stats::ln_gamma_upper(n, total),
            other => {
                return Err(TracemarkError::new_err(format!(
                    "null distribution {other:?} is not known to this version of the Python bindings"
                )))
            }
        };
        Ok(stats::log10(ln_p))
    }

    fn __repr__(&self) -> String {
        format!("Null({:?})", self.inner)
    }
}

/// What a scheme states about detection and generation: the null distribution
/// of a score, the statistic's name, how it takes part in sampling, and whether
/// generation skips repeated contexts by default.
#[pyclass(name = "Contract", module = "tracemark", frozen)]
pub(crate) struct PyContract {
    inner: Contract,
}

impl From<Contract> for PyContract {
    fn from(inner: Contract) -> Self {
        Self { inner }
    }
}

#[pymethods]
impl PyContract {
    /// The null distribution of one scored observation.
    #[getter]
    fn null(&self) -> PyNull {
        PyNull { inner: self.inner.null }
    }

    /// The statistic's name in reports (`green count`, `g-value count`, ...).
    #[getter]
    fn statistic(&self) -> &'static str {
        self.inner.statistic
    }

    /// How the scheme takes part in sampling.
    #[getter]
    fn generation(&self) -> PyResult<PyGeneration> {
        PyGeneration::of(self.inner.generation)
    }

    /// Whether the caller must sample the processed row as it is.
    #[getter]
    fn controls_sampling(&self) -> bool {
        self.inner.generation.controls_sampling()
    }

    /// Whether generation should skip contexts already watermarked in the sequence by default.
    #[getter]
    fn skip_repeated(&self) -> bool {
        self.inner.skip_repeated
    }

    fn __repr__(&self) -> String {
        format!(
            "Contract(null={:?}, statistic='{}', generation={:?}, skip_repeated={})",
            self.inner.null,
            self.inner.statistic,
            self.inner.generation,
            if self.inner.skip_repeated { "True" } else { "False" }
        )
    }
}
