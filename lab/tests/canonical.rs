//! Canonical text against the lab's tamperings: every tampering the
//! verifier canonicalises is undone, a tampered watermarked text still
//! verifies through its canonical form, and testing both forms keeps the
//! false-positive rate at alpha. (The tamperings are attacks, so they live in
//! the lab; the canonical form they test is the verifier's.)

mod support;

use support::{generate, random_tokens, word_tokenizer_json, words, Rng};
use tracemark_core::SchemeConfig;
use tracemark_lab::tamper::{tamper, Tampering, HOMOGLYPHS};
use tracemark_verifier::canonical::{canonicalize, ChangeKind, Form, FormPlan};
use tracemark_verifier::internal::sha256_hex;
use tracemark_verifier::{DetectOptions, Detector, TextTokenizer, Verdict};

const TEXT: &str =
    "The quick brown fox jumps over the lazy dog, and Café Zürich opens at six.\nA second line: tea, coffee; 42 cups.";

fn config(s: &str) -> SchemeConfig {
    s.parse().expect("valid scheme")
}

fn options(alpha: f64) -> DetectOptions {
    DetectOptions {
        alpha,
        min_scored: 1,
        ..DetectOptions::default()
    }
}

#[test]
fn every_tampering_is_undone() {
    for t in Tampering::ALL {
        let tampered = tamper(TEXT, t, 1.0, 3);
        let c = canonicalize(&tampered);
        assert_eq!(
            c.text(),
            TEXT,
            "{t}: {:?}",
            c.changes().iter().take(5).collect::<Vec<_>>()
        );
        assert!(!c.is_unchanged(), "{t}");
    }
}

#[test]
fn the_attackers_homoglyphs_map_back_through_the_unicode_data() {
    for (latin, fake) in HOMOGLYPHS {
        let word = format!("Mix{fake}ed text with Latin letters all around it");
        let c = canonicalize(&word);
        assert_eq!(
            c.text(),
            format!("Mix{latin}ed text with Latin letters all around it"),
            "{fake}"
        );
        assert_eq!(c.count(ChangeKind::Confusable), 1);
    }
}

#[test]
fn a_mostly_substituted_text_stays_latin() {
    // Every look-alike letter replaced: Cyrillic letters outnumber Latin
    // ones, but their prototypes are Latin.
    let tampered = tamper("a cease peace space case race pace ace", Tampering::Homoglyphs, 1.0, 0);
    assert_eq!(canonicalize(&tampered).text(), "a cease peace space case race pace ace");
}

#[test]
fn tampered_text_verifies_through_its_canonical_form() {
    let vocab = 3000;
    let tok = TextTokenizer::from_bytes(word_tokenizer_json(vocab).as_bytes()).expect("tokenizer");
    let cfg = config("kgw:gamma=0.25,delta=3,context=lefthash:1");
    let mut rng = Rng::new(111);
    let key = rng.key();
    let scheme = cfg.build(&key, vocab).expect("scheme");
    let ids = generate(scheme.as_ref(), &[5], 120, &mut rng, |_, _| vec![0.0; vocab]);
    let text = words(&ids);
    let opts = DetectOptions {
        marks: true,
        ..DetectOptions::default()
    };
    let d = Detector::new(&key, &cfg, vocab, opts.clone()).expect("detector");
    let clean = d.detect_text(&tok, None, &text).expect("clean");
    assert_eq!(clean.verdict, Verdict::Detected);
    let c = clean.canonical.as_ref().expect("canonical section");
    assert_eq!((c.changes.total, c.forms.len(), c.correction_log10), (0, 1, 0.0));
    assert_eq!(
        clean.verdict_log10_p(),
        clean.outcome.log10_p(),
        "no correction for one form"
    );

    let plain = Detector::new(
        &key,
        &cfg,
        vocab,
        DetectOptions {
            canonicalize: false,
            ..opts.clone()
        },
    )
    .expect("detector");
    for t in Tampering::ALL {
        let tampered = tamper(&text, t, 1.0, 9);
        if tampered == text {
            continue; // nothing for this tampering to change in `w123` words
        }
        let r = d.detect_text(&tok, None, &tampered).expect("tampered");
        assert_eq!(r.verdict, Verdict::Detected, "{t}");
        let c = r.canonical.as_ref().expect("canonical section");
        assert!(c.changes.total > 0, "{t}");
        // Tampering at rate 1 is dense or of a kind only tampering makes:
        // the canonical form alone is tested, without a factor (SPEC §14.1).
        assert_eq!(c.plan, Some(FormPlan::Canonical), "{t}");
        assert_eq!(c.forms.len(), 1);
        assert_eq!(
            (c.forms[0].form, c.decided_by),
            (Form::Canonical, Form::Canonical),
            "{t}"
        );
        let family = c.family_log10_p.expect("tested");
        assert_eq!(Some(family), c.forms[0].log10_p.map(|l| l.min(0.0)), "{t}");
        assert_eq!(c.correction_log10, 0.0);
        assert_eq!(r.verdict_log10_p(), Some(family));
        assert_eq!(
            r.input_sha256.as_deref(),
            Some(sha256_hex(tampered.as_bytes()).as_str())
        );
        // Marks point into the tampered text, at the words they scored.
        let marks = r.marks.as_ref().expect("marks");
        let (s, e) = marks[3].span.expect("span");
        let word = tracemark_verifier::canonicalize(&tampered[s..e]);
        assert_eq!(word.text().trim(), format!("w{}", ids[3]), "{t}: {:?}", &tampered[s..e]);
        // Without canonicalisation the tampering defeats the verdict.
        if matches!(
            t,
            Tampering::ZeroWidthSpace | Tampering::FullWidth | Tampering::ZeroWidthJoiner
        ) {
            assert_ne!(
                plain.detect_text(&tok, None, &tampered).expect("plain").verdict,
                Verdict::Detected,
                "{t}"
            );
        }
        let human = tracemark_verifier::render::detection(&r, Some(&tampered), false);
        assert!(
            human.contains("tampering is itself evidence") && human.contains("Bonferroni"),
            "{human}"
        );
    }
}

#[test]
fn testing_both_forms_keeps_the_false_positive_rate_at_alpha() {
    // Unwatermarked text under many keys, tampered so that the plan tests
    // the canonical form alone (zero-width joiners) or both forms (four
    // doubled spaces in 60 words: SPEC §14.1): the verdict fires at most at
    // alpha either way.
    let vocab = 2000;
    let tok = TextTokenizer::from_bytes(word_tokenizer_json(vocab).as_bytes()).expect("tokenizer");
    let cfg = config("kgw:gamma=0.25,delta=3,context=lefthash:1");
    let mut rng = Rng::new(112);
    let alpha = 0.05;
    let trials = 2000;
    for plan in [FormPlan::Canonical, FormPlan::Both] {
        let mut fired = 0;
        for i in 0..trials {
            let ids = random_tokens(vocab, 60, &mut rng);
            let text = match plan {
                FormPlan::Canonical => tamper(&words(&ids), Tampering::ZeroWidthJoiner, 0.5, i),
                _ => words(&ids).replacen(' ', "  ", 4),
            };
            let d = Detector::new(&rng.key(), &cfg, vocab, options(alpha)).expect("detector");
            let r = d.detect_text(&tok, None, &text).expect("detect");
            let c = r.canonical.as_ref().expect("canonical section");
            assert_eq!((c.plan, c.forms.len()), (Some(plan), plan.forms()));
            fired += usize::from(r.verdict == Verdict::Detected);
        }
        // Allow 3 standard deviations of noise over alpha.
        let bound = alpha + 3.0 * (alpha * (1.0 - alpha) / trials as f64).sqrt();
        assert!((fired as f64 / trials as f64) <= bound, "{plan}: {fired} of {trials}");
    }
}
