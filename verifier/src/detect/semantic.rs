//! The exact test over sentences: the semantic layer's detection (SPEC §15.3).
//!
//! A text is cut into sentences (SPEC §15.1, [`crate::text::sentences`]);
//! sentences of fewer than the scheme's `min_words` words are not scored;
//! the others need their embeddings (SPEC §15.2), which the caller computes
//! (this crate stays free of candle: `tracemark_candle::embed::Embedder`,
//! or `tracemark.Embedder` in Python). Each scored sentence falls in a
//! keyed region ([`tracemark_core::Semantic`]) and is one *unit*: its region
//! for `chain=none`, the pair (previous scored sentence's region, its
//! region) for `chain=previous` (the first scored sentence is chained on
//! the spec's start value; short sentences are skipped and do not reset the
//! chain). Repeated units count once (a copied sentence, or a second
//! sentence on the same spot, is not new evidence), and the number `k` of
//! green units among the `n` distinct ones is tested against
//! Binomial(`n`, `G / 65536`), exactly, in log space. Whether a unit is
//! green is the core's [`Semantic::is_green_after`], the same function
//! generation uses; nothing here branches on the chaining but the unit.
//!
//! **Why this is exact.** Given the text and the key's hyperplanes, the
//! distinct units are fixed, and their green bits are separate PRF values
//! (SPEC §15.3), independent Bernoulli(`G / 65536`) over the key. The level
//! holds over the key for every text, as kgw's pair deduplication does for
//! tokens. For one *fixed* key the share of human sentences in green units
//! is not exactly γ (anisotropy); `docs/semantic.md` measures it, and why
//! `chain=previous` is the recommended configuration.
//!
//! ```
//! use tracemark_core::{Key, Semantic, REFERENCE_MEAN};
//! use tracemark_verifier::detect::semantic::{detect_text, scored_spans, SemanticOutcome};
//!
//! let key = Key::from_bytes([7; 32]); // use Key::load() in practice
//! let scheme = Semantic::new(&key, "semantic:gamma=0.25,planes=8".parse()?)?;
//! let text = "Yes. The first long sentence is here. The second long sentence is here.";
//! let spans = scored_spans(scheme.config(), text);
//! assert_eq!(spans.len(), 2);
//! // Embed `&text[span]` for each span; here, stand-ins.
//! let embeddings = vec![REFERENCE_MEAN.to_vec(); spans.len()];
//! let d = detect_text(&scheme, text, &embeddings)?;
//! assert_eq!((d.counts.scored, d.counts.distinct), (2, 1));
//! assert!(matches!(d.outcome, SemanticOutcome::Tested { .. }));
//! # Ok::<(), tracemark_verifier::Error>(())
//! ```

use core::ops::Range;
use std::collections::HashSet;

use tracemark_core::{Chain, KeyId, Region, Semantic, SemanticConfig};

use crate::error::{Error, Result};
use crate::stats;
use crate::text::sentences::{sentence_spans, SENTENCES_VERSION};

/// What became of one sentence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SentenceStatus {
    /// Fewer words than the scheme's `min_words`: not scored.
    Short,
    /// Scored: the first sentence of the text with its unit (its region, or
    /// for `chain=previous` its (previous region, region) pair).
    Scored {
        /// The region id.
        region: u32,
        /// Whether the region is green (after its previous region, for
        /// `chain=previous`).
        green: bool,
    },
    /// Its unit (region, or chained pair) was already counted for an earlier
    /// sentence of the text: not scored again.
    Repeated {
        /// The region id.
        region: u32,
        /// Whether the region is green.
        green: bool,
    },
}

/// What a scored sentence's green bit was chained on (`chain=previous`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Previous {
    /// The first scored sentence of the text: the spec's start value
    /// ([`tracemark_core::CHAIN_START`]).
    Start,
    /// The region id of the previous scored sentence.
    Region(u32),
}

/// One sentence of the tested text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SemanticSentence {
    /// Byte span in the text (empty spans for [`detect_regions`], which sees no text).
    pub span: Range<usize>,
    /// Words (SPEC §15.3), 0 for [`detect_regions`].
    pub words: usize,
    /// What the test did with it.
    #[serde(flatten)]
    pub status: SentenceStatus,
    /// For `chain=previous`, a scored sentence's previous region: its unit
    /// is the pair (`previous`, `region`). `None` for `chain=none` and for
    /// short sentences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
}

/// The counts of a semantic test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SemanticCounts {
    /// Sentences of the text (SPEC §15.1).
    pub sentences: usize,
    /// Sentences too short to score.
    pub short: usize,
    /// Sentences scored (embedded and given a region).
    pub scored: usize,
    /// Distinct units among the scored sentences (regions for `chain=none`,
    /// (previous region, region) pairs for `chain=previous`): the binomial's `n`.
    pub distinct: usize,
    /// Green units among the distinct ones: the binomial's `k`.
    pub green: usize,
}

/// Whether the text was tested.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SemanticOutcome {
    /// The exact binomial test of the green-unit count.
    Tested {
        /// `Binomial(n=.., p=..)`, the null distribution of the count.
        null: String,
        /// The exact p-value (0 if it underflows `f64`; see `log10_p`).
        p_value: f64,
        /// `log10` of the exact p-value.
        log10_p: f64,
    },
    /// No sentence could be scored.
    Inconclusive {
        /// Why, in words.
        reason: String,
    },
}

impl SemanticOutcome {
    /// `log10` of the p-value, if tested.
    pub fn log10_p(&self) -> Option<f64> {
        match self {
            Self::Tested { log10_p, .. } => Some(*log10_p),
            Self::Inconclusive { .. } => None,
        }
    }
}

/// The semantic layer's detection of one text under one key.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct SemanticDetection {
    /// The scheme string.
    pub scheme: String,
    /// The public key id.
    pub key_id: String,
    /// The sentence segmentation's version (SPEC §15.1).
    pub sentences_version: u32,
    /// The exact null probability of a green region, `G / 65536`.
    pub gamma: f64,
    /// Every sentence, in order.
    pub sentences: Vec<SemanticSentence>,
    /// The counts.
    pub counts: SemanticCounts,
    /// The test.
    pub outcome: SemanticOutcome,
}

/// The byte spans of the sentences of `text` that are scored (at least
/// `min_words` words), in order: embed exactly these, in this order, for
/// [`detect_text`].
pub fn scored_spans(config: &SemanticConfig, text: &str) -> Vec<Range<usize>> {
    sentence_spans(text)
        .into_iter()
        .filter(|s| config.is_scored(&text[s.clone()]))
        .collect()
}

/// Tests a text given the embeddings of its [`scored_spans`], in order.
/// Fails if their number differs from the number of scored sentences, or
/// one is not 384 finite values.
pub fn detect_text<E: AsRef<[f32]>>(scheme: &Semantic, text: &str, embeddings: &[E]) -> Result<SemanticDetection> {
    let mut tally = Tally::new(scheme, true);
    tally.push_text(text, embeddings)?;
    Ok(tally.finish())
}

/// The semantic layer of many texts tested together: a corpus, or the
/// answers of one account. Each text's scored sentences are chained from the
/// spec's start value (`chain=previous`), and units repeated anywhere in
/// the corpus count once, so a sentence copied into many documents, or two
/// documents on the same spot, are not new evidence; the test is then the
/// same exact binomial as one text's, over the corpus's distinct units
/// (exact for the same reason: distinct units have independent green bits
/// over the key). Per-sentence records are not kept.
///
/// ```
/// use tracemark_core::{Key, Semantic, REFERENCE_MEAN};
/// use tracemark_verifier::detect::semantic::{scored_spans, SemanticCorpus};
///
/// let key = Key::from_bytes([7; 32]); // use Key::load() in practice
/// let scheme = Semantic::new(&key, "semantic:gamma=0.25,planes=8".parse()?)?;
/// let mut corpus = SemanticCorpus::new(&scheme);
/// for text in ["The first long sentence is here.", "The first long sentence is here. Yes."] {
///     let n = scored_spans(scheme.config(), text).len();
///     corpus.push_text(text, &vec![REFERENCE_MEAN.to_vec(); n])?; // embed each span in practice
/// }
/// let d = corpus.finish();
/// assert_eq!((d.counts.scored, d.counts.distinct, d.counts.short), (2, 1, 1));
/// # Ok::<(), tracemark_verifier::Error>(())
/// ```
pub struct SemanticCorpus<'a> {
    tally: Tally<'a>,
    documents: usize,
}

impl<'a> SemanticCorpus<'a> {
    /// An empty corpus tested under `scheme`.
    pub fn new(scheme: &'a Semantic) -> Self {
        Self {
            tally: Tally::new(scheme, false),
            documents: 0,
        }
    }

    /// Adds a text, given the embeddings of its [`scored_spans`] in order
    /// (the errors of [`detect_text`]; on error nothing is added).
    pub fn push_text<E: AsRef<[f32]>>(&mut self, text: &str, embeddings: &[E]) -> Result<()> {
        self.tally.push_text(text, embeddings)?;
        self.documents += 1;
        Ok(())
    }

    /// Adds the regions of one text's scored sentences, in order (computed
    /// elsewhere, as for [`detect_regions`]).
    pub fn push_regions(&mut self, regions: &[Region]) {
        self.tally.start_text();
        for &r in regions {
            self.tally.push(0..0, 0, Some(r));
        }
        self.documents += 1;
    }

    /// Texts added so far.
    pub fn documents(&self) -> usize {
        self.documents
    }

    /// The test over every text added.
    pub fn finish(self) -> SemanticDetection {
        self.tally.finish()
    }
}

/// Tests the regions of a text's scored sentences, in order (computed
/// elsewhere, e.g. by the decoder or a service that embeds). For
/// `chain=previous` the order is the chain: each region is chained on the
/// one before it.
pub fn detect_regions(scheme: &Semantic, regions: &[Region]) -> SemanticDetection {
    let mut tally = Tally::new(scheme, true);
    for &r in regions {
        tally.push(0..0, 0, Some(r));
    }
    tally.finish()
}

struct Tally<'a> {
    scheme: &'a Semantic,
    /// The units counted so far: `(previous, region)` for `chain=previous`,
    /// `(None, region)` for `chain=none`.
    seen: HashSet<(Option<Region>, Region)>,
    /// The region of the last scored sentence (`None` before the first).
    previous: Option<Region>,
    sentences: Vec<SemanticSentence>,
    /// Whether `sentences` is kept (one text) or not (a corpus).
    keep: bool,
    counts: SemanticCounts,
}

impl<'a> Tally<'a> {
    fn new(scheme: &'a Semantic, keep: bool) -> Self {
        Self {
            scheme,
            seen: HashSet::new(),
            previous: None,
            sentences: Vec::new(),
            keep,
            counts: SemanticCounts::default(),
        }
    }

    /// A new text begins: its first scored sentence is chained on the start value.
    fn start_text(&mut self) {
        self.previous = None;
    }

    /// Adds a text given the embeddings of its scored spans, in order;
    /// nothing on error.
    fn push_text<E: AsRef<[f32]>>(&mut self, text: &str, embeddings: &[E]) -> Result<()> {
        let spans = sentence_spans(text);
        let scored = spans
            .iter()
            .filter(|s| self.scheme.config().is_scored(&text[(*s).clone()]))
            .count();
        if scored != embeddings.len() {
            return Err(Error::InvalidOption {
                name: "embeddings",
                message: format!(
                    "{} embeddings for {scored} scored sentences: embed each span of scored_spans, in order",
                    embeddings.len()
                ),
            });
        }
        // Every region first, so that a bad embedding adds nothing.
        let mut next = embeddings.iter();
        let mut sentences = Vec::with_capacity(spans.len());
        for span in spans {
            let words = tracemark_core::word_count(&text[span.clone()]);
            let region = match self.scheme.config().is_scored(&text[span.clone()]) {
                // `scored == embeddings.len()`, so there is one for each scored sentence.
                true => next.next().map(|e| self.scheme.region(e.as_ref())).transpose()?,
                false => None,
            };
            sentences.push((span, words, region));
        }
        self.start_text();
        for (span, words, region) in sentences {
            self.push(span, words, region);
        }
        Ok(())
    }

    fn push(&mut self, span: Range<usize>, words: usize, region: Option<Region>) {
        self.counts.sentences += 1;
        let mut previous = None;
        let status = match region {
            None => {
                // Short: skipped, the chain goes on past it.
                self.counts.short += 1;
                SentenceStatus::Short
            }
            Some(r) => {
                self.counts.scored += 1;
                let green = self.scheme.is_green_after(self.previous, r);
                let unit = match self.scheme.config().chain() {
                    Chain::None => (None, r),
                    // `Chain` is non-exhaustive; every chained variant is a pair.
                    _ => {
                        previous = Some(self.previous.map_or(Previous::Start, |p| Previous::Region(p.id())));
                        (self.previous, r)
                    }
                };
                self.previous = Some(r);
                if self.seen.insert(unit) {
                    self.counts.distinct += 1;
                    self.counts.green += usize::from(green);
                    SentenceStatus::Scored { region: r.id(), green }
                } else {
                    SentenceStatus::Repeated { region: r.id(), green }
                }
            }
        };
        if self.keep {
            self.sentences.push(SemanticSentence {
                span,
                words,
                status,
                previous,
            });
        }
    }

    fn finish(self) -> SemanticDetection {
        let gamma = self.scheme.config().effective_gamma();
        let (n, k) = (self.counts.distinct as u64, self.counts.green as u64);
        let outcome = if n == 0 {
            SemanticOutcome::Inconclusive {
                reason: format!(
                    "no sentence of at least {} words to score",
                    self.scheme.config().min_words()
                ),
            }
        } else {
            let ln_p = stats::ln_binomial_upper(k, n, gamma);
            SemanticOutcome::Tested {
                null: format!("Binomial(n={n}, p={gamma})"),
                p_value: stats::p_from_ln(ln_p),
                log10_p: stats::log10(ln_p),
            }
        };
        SemanticDetection {
            scheme: self.scheme.describe(),
            key_id: key_hex(self.scheme.key_id()),
            sentences_version: SENTENCES_VERSION,
            gamma,
            sentences: self.sentences,
            counts: self.counts,
            outcome,
        }
    }
}

fn key_hex(id: KeyId) -> String {
    id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracemark_core::{Key, EMBEDDING_DIM, REFERENCE_MEAN};

    fn scheme(cfg: &str) -> Semantic {
        Semantic::new(&Key::from_bytes([3; 32]), cfg.parse().expect("valid in this test")).expect("valid in this test")
    }

    /// An embedding in a given region: the mean plus a small step along
    /// `±normal_j` for every plane (the normals are nearly orthogonal, and the
    /// test checks the region it landed in).
    fn in_region(s: &Semantic, r: u32) -> Vec<f32> {
        let mut e: Vec<f64> = REFERENCE_MEAN.iter().map(|&m| f64::from(m)).collect();
        for j in 0..s.config().planes() as usize {
            let sign = if r >> j & 1 == 1 { 1.0 } else { -1.0 };
            for (ei, &n) in e.iter_mut().zip(s.normal(j)) {
                *ei += sign * 1e-7 * f64::from(n);
            }
        }
        let e: Vec<f32> = e.iter().map(|&v| v as f32).collect();
        assert_eq!(s.region(&e).expect("valid in this test").id(), r);
        e
    }

    #[test]
    fn counts_dedup_and_exact_tail() {
        let s = scheme("semantic:gamma=0.25,planes=4,min_words=3");
        let green: Vec<u32> = (0..16).filter(|&r| s.is_green(Region::new(r))).collect();
        let red: Vec<u32> = (0..16).filter(|&r| !s.is_green(Region::new(r))).collect();
        assert!(!green.is_empty() && red.len() >= 2, "{green:?}");
        let text = "Short one. A first long sentence here. A second long sentence here. \
                    A third long sentence here. A fourth long sentence here.";
        assert_eq!(scored_spans(s.config(), text).len(), 4);
        // Sentences 1 and 3 in the same green region, 2 and 4 in two red ones.
        let embs = [green[0], red[0], green[0], red[1]].map(|r| in_region(&s, r));
        let d = detect_text(&s, text, &embs).expect("valid in this test");
        assert_eq!(
            d.counts,
            SemanticCounts {
                sentences: 5,
                short: 1,
                scored: 4,
                distinct: 3,
                green: 1
            }
        );
        assert_eq!(d.sentences[0].status, SentenceStatus::Short);
        assert_eq!(
            d.sentences[3].status,
            SentenceStatus::Repeated {
                region: green[0],
                green: true
            }
        );
        // P(Binomial(3, 0.25) >= 1) = 1 - 0.75^3.
        let SemanticOutcome::Tested { p_value, .. } = d.outcome else {
            panic!("not tested")
        };
        assert!((p_value - (1.0 - 0.75f64.powi(3))).abs() < 1e-12);
        let regions: Vec<Region> = [green[0], red[0], green[0], red[1]].map(Region::new).to_vec();
        assert_eq!(detect_regions(&s, &regions).counts.distinct, 3);
        // Wrong number of embeddings, wrong dimension.
        assert!(detect_text(&s, text, &embs[..3]).is_err());
        let bad = vec![vec![0.0f32; EMBEDDING_DIM - 1]; 4];
        assert!(detect_text(&s, text, &bad).is_err());
        // Nothing to score.
        let d = detect_text::<Vec<f32>>(&s, "Yes. No.", &[]).expect("valid in this test");
        assert!(matches!(d.outcome, SemanticOutcome::Inconclusive { .. }));
        assert!(!serde_json::to_string(&d).expect("valid in this test").is_empty());
    }

    /// A corpus: each text's chain starts at the start value, units repeated
    /// across texts count once, the test is the binomial over the distinct
    /// units of all of them, and a text with a bad embedding adds nothing.
    #[test]
    fn a_corpus_counts_units_across_texts() {
        for chain in ["none", "previous"] {
            let s = scheme(&format!("semantic:gamma=0.25,planes=4,min_words=3,chain={chain}"));
            let text = "A first long sentence here. Yes. A second long sentence here.";
            let docs: [[u32; 2]; 3] = [[1, 2], [1, 2], [2, 1]];
            let mut corpus = SemanticCorpus::new(&s);
            for d in docs {
                corpus
                    .push_text(text, &d.map(|r| in_region(&s, r)))
                    .expect("valid in this test");
            }
            let bad = vec![vec![0.0f32; EMBEDDING_DIM - 1]; 2];
            assert!(corpus.push_text(text, &bad).is_err());
            corpus.push_regions(&[Region::new(3)]);
            assert_eq!(corpus.documents(), 4);
            let d = corpus.finish();
            // The units by hand: each text chained from the start.
            let mut units = HashSet::new();
            let mut green = 0;
            for regions in [&[1, 2][..], &[1, 2], &[2, 1], &[3]] {
                let mut previous = None;
                for &r in regions {
                    let r = Region::new(r);
                    let unit = if chain == "none" { (None, r) } else { (previous, r) };
                    if units.insert(unit) {
                        green += usize::from(s.is_green_after(previous, r));
                    }
                    previous = Some(r);
                }
            }
            assert_eq!(
                (d.counts.scored, d.counts.short, d.counts.sentences),
                (7, 3, 10),
                "{chain}"
            );
            assert_eq!((d.counts.distinct, d.counts.green), (units.len(), green), "{chain}");
            assert!(d.sentences.is_empty(), "a corpus keeps no per-sentence records");
            let single = detect_regions(&s, &[Region::new(1), Region::new(2)]);
            let SemanticOutcome::Tested { log10_p, .. } = d.outcome else {
                panic!("not tested")
            };
            let want = stats::log10(stats::ln_binomial_upper(green as u64, units.len() as u64, 0.25));
            assert!((log10_p - want).abs() < 1e-12, "{chain}: {log10_p} vs {want}");
            assert!(single.counts.distinct <= units.len());
        }
    }

    /// Chained: units are (previous, region) pairs, short sentences do not
    /// reset the chain, the same region after different ones counts again.
    #[test]
    fn chained_units_are_pairs() {
        let s = scheme("semantic:gamma=0.25,planes=4,min_words=3,chain=previous");
        let plain = scheme("semantic:gamma=0.25,planes=4,min_words=3");
        let text = "A first long sentence here. Yes. A second long sentence here. \
                    A third long sentence here. A fourth long sentence here. A fifth long sentence here.";
        assert_eq!(scored_spans(s.config(), text).len(), 5);
        // Regions 1 2 1 2 2: pairs (start,1) (1,2) (2,1) (1,2)* (2,2); regions 1 2.
        let regions = [1u32, 2, 1, 2, 2];
        let embs = regions.map(|r| in_region(&s, r));
        let d = detect_text(&s, text, &embs).expect("valid in this test");
        assert_eq!((d.counts.sentences, d.counts.short, d.counts.scored), (6, 1, 5));
        assert_eq!(d.counts.distinct, 4);
        let r = Region::new;
        let want = [(None, r(1)), (Some(r(1)), r(2)), (Some(r(2)), r(1)), (Some(r(2)), r(2))];
        let green = want.iter().filter(|&&(p, x)| s.is_green_after(p, x)).count();
        assert_eq!(d.counts.green, green);
        // The short sentence is skipped: the second scored one is chained on the first.
        assert_eq!(d.sentences[1].status, SentenceStatus::Short);
        assert_eq!(d.sentences[1].previous, None);
        assert_eq!(d.sentences[0].previous, Some(Previous::Start));
        assert_eq!(d.sentences[2].previous, Some(Previous::Region(1)));
        assert!(matches!(
            d.sentences[4].status,
            SentenceStatus::Repeated { region: 2, .. }
        ));
        assert!(matches!(
            d.sentences[5].status,
            SentenceStatus::Scored { region: 2, .. }
        ));
        let SemanticOutcome::Tested { log10_p, .. } = d.outcome else {
            panic!("not tested")
        };
        let p = (green..=4)
            .map(|k| {
                let c = [1.0, 4.0, 6.0, 4.0, 1.0][k];
                c * 0.25f64.powi(k as i32) * 0.75f64.powi(4 - k as i32)
            })
            .sum::<f64>();
        assert!((log10_p - p.log10()).abs() < 1e-12, "{log10_p} {p}");
        assert_eq!(detect_regions(&s, &regions.map(Region::new)).counts, {
            let mut c = d.counts;
            c.sentences = 5;
            c.short = 0;
            c
        });
        // The same regions without chaining: 2 distinct regions.
        let d = detect_text(&plain, text, &embs).expect("valid in this test");
        assert_eq!(d.counts.distinct, 2);
        assert!(d.sentences.iter().all(|t| t.previous.is_none()));
        let json = serde_json::to_string(&detect_regions(&s, &[r(1), r(2)])).expect("valid in this test");
        assert!(
            json.contains(r#""previous":"start""#) && json.contains(r#""previous":{"region":1}"#),
            "{json}"
        );
    }

    /// Under the null (a fresh key per text, fixed regions of the text), the
    /// p-value is exact: P(p <= a) <= a, and for the binomial close to it at
    /// its attainable levels. 4,000 keys, 6 distinct regions per text.
    #[test]
    fn level_over_keys() {
        let regions: Vec<Region> = [0u32, 5, 17, 99, 200, 255].map(Region::new).to_vec();
        let trials = 4000;
        let mut below = 0;
        for k in 0..trials {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&(k as u32).to_le_bytes());
            let s = Semantic::new(
                &Key::from_bytes(bytes),
                "semantic:gamma=0.25,planes=8".parse().expect("valid in this test"),
            )
            .expect("valid in this test");
            let d = detect_regions(&s, &regions);
            // P(Binomial(6, 0.25) >= 4) = 0.03760...
            below += usize::from(d.outcome.log10_p().expect("valid in this test") <= 0.0376f64.log10() + 1e-9);
        }
        // Expected 150.4 of 4,000, sd 12.0: within 4 sd.
        assert!((102..=199).contains(&below), "{below}");
    }

    /// The same for chained units: a text whose 7 regions give 6 distinct
    /// pairs (one region twice in a row, one pair repeated).
    #[test]
    fn level_over_keys_chained() {
        let regions: Vec<Region> = [7u32, 7, 40, 7, 7, 40, 200].map(Region::new).to_vec();
        let trials = 4000;
        let mut below = 0;
        for k in 0..trials {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&(k as u32).to_le_bytes());
            bytes[31] = 1;
            let s = Semantic::new(
                &Key::from_bytes(bytes),
                "semantic:gamma=0.25,planes=8,chain=previous"
                    .parse()
                    .expect("valid in this test"),
            )
            .expect("valid in this test");
            let d = detect_regions(&s, &regions);
            // (start,7) (7,7) (7,40) (40,7) (7,7)* (7,40)* (40,200): 5 distinct.
            assert_eq!(d.counts.distinct, 5);
            // P(Binomial(5, 0.25) >= 3) = 0.103515625.
            below += usize::from(d.outcome.log10_p().expect("valid in this test") <= 0.103515625f64.log10() + 1e-9);
        }
        // Expected 414.1 of 4,000, sd 19.3: within 4 sd.
        assert!((337..=491).contains(&below), "{below}");
    }
}
