//! The `tracemark` binary: commands, outputs and documented exit codes.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::{generate, random_tokens, word_tokenizer_json, words, Dir, Rng};
use tracemark_core::{Key, SchemeConfig};

const SCHEME: &str = "kgw:gamma=0.25,delta=2,context=lefthash:1";
const VOCAB: usize = 3000;

fn tracemark(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tracemark"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    if let Some(input) = stdin {
        use std::io::Write;
        // A command that fails on its arguments exits without reading its input.
        let _ = child.stdin.take().expect("stdin").write_all(input);
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("exits")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn watermarked_ids(key: &Key, n: usize, seed: u64) -> Vec<u32> {
    let cfg: SchemeConfig = SCHEME.parse().expect("cfg");
    let scheme = cfg.build(key, VOCAB).expect("scheme");
    generate(scheme.as_ref(), &[1], n, &mut Rng::new(seed), |_, _| vec![0.0; VOCAB])
}

#[test]
fn keys_are_generated_derived_and_protected() {
    let dir = Dir::new("cli-keys");
    let key = dir.path("master.key");
    let out = tracemark(&["keygen", "--out", s(&key)], None);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout).expect("utf8").trim().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(
        String::from_utf8(tracemark(&["key-id", "--key", s(&key)], None).stdout)
            .expect("utf8")
            .trim(),
        id
    );
    // Never overwrite; never print the key.
    let again = tracemark(&["keygen", "--out", s(&key)], None);
    assert_eq!(code(&again), 5);
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    let text = std::fs::read_to_string(&key).expect("key file");
    let secret = &text["tracemark-key-v1:".len().."tracemark-key-v1:".len() + 64];
    let child = dir.path("cohort3.key");
    let out = tracemark(
        &["derive", "--key", s(&key), "--label", "cohort/3", "--out", s(&child)],
        None,
    );
    assert_eq!(code(&out), 0);
    let loaded = Key::load(&key).expect("loads");
    assert_eq!(
        String::from_utf8(out.stdout).expect("utf8").trim(),
        loaded.derive("cohort/3").expect("ok").id().to_string()
    );
    assert_eq!(
        code(&tracemark(
            &[
                "derive",
                "--key",
                s(&key),
                "--label",
                "bad label",
                "--out",
                s(&dir.path("x"))
            ],
            None
        )),
        5
    );
    // A corrupted key file is refused with the key exit code, and the secret never appears in messages.
    let corrupt = dir.path("corrupt.key");
    let at = "tracemark-key-v1:".len();
    let flipped = if &text[at..=at] == "0" { "1" } else { "0" };
    std::fs::write(&corrupt, format!("{}{flipped}{}", &text[..at], &text[at + 1..])).expect("write");
    let out = tracemark(&["key-id", "--key", s(&corrupt)], None);
    assert_eq!(code(&out), 5);
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupted"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(secret));
    assert_eq!(
        code(&tracemark(&["key-id", "--key", s(&dir.path("missing.key"))], None)),
        5
    );
}

#[test]
fn detect_exit_codes_and_json() {
    let dir = Dir::new("cli-detect");
    let key_path = dir.path("k.key");
    let key = Rng::new(130).key();
    key.save(&key_path).expect("save");
    let ids = watermarked_ids(&key, 120, 1);
    let marked = dir.path("marked.json");
    std::fs::write(&marked, serde_json::to_string(&ids).expect("json")).expect("write");
    let vocab = VOCAB.to_string();
    let base = [
        "detect",
        "--key",
        s(&key_path),
        "--scheme",
        SCHEME,
        "--vocab",
        &vocab,
        "--ids",
    ];

    let out = tracemark(&[&base[..], &["--json", "--prompt", "1", s(&marked)]].concat(), None);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["verdict"], "detected");
    assert_eq!(report["key_id"], key.id().to_string());
    assert_eq!(report["spec"], "tracemark/v1");
    assert!(report["outcome"]["log10_p"].as_f64().expect("p") < -6.0);
    assert_eq!(report["outcome"]["status"], "tested");
    assert!(report["tool"].as_str().expect("tool").starts_with("tracemark "));
    assert!(report["input_sha256"].as_str().expect("hash").starts_with("sha256:"));

    // Whitespace-separated ids on stdin, unwatermarked: not detected.
    let plain: Vec<String> = random_tokens(VOCAB, 120, &mut Rng::new(2))
        .iter()
        .map(u32::to_string)
        .collect();
    let out = tracemark(&[&base[..], &["-"]].concat(), Some(plain.join(" ").as_bytes()));
    assert_eq!(code(&out), 1);
    assert!(String::from_utf8_lossy(&out.stdout).contains("not detected"));
    // Too short: inconclusive.
    assert_eq!(code(&tracemark(&[&base[..], &["-"]].concat(), Some(b"5 6 7"))), 3);
    // Wrong tokenizer / vocabulary: input error.
    let out = tracemark(&[&base[..], &["-"]].concat(), Some(b"1 2 999999"));
    assert_eq!(code(&out), 4);
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside the vocabulary"));
    // Usage errors.
    assert_eq!(
        code(&tracemark(
            &["detect", "--key", s(&key_path), "--scheme", "kgw:gamma=2", "-"],
            Some(b"x")
        )),
        2
    );
    assert_eq!(
        code(&tracemark(
            &["detect", "--key", s(&key_path), "--scheme", SCHEME, "-"],
            Some(b"x")
        )),
        2
    );
    // A bad option value is a usage error too, whichever layer catches it.
    for bad in [
        &["--alpha", "2"][..],
        &["--min-tokens", "0"],
        &["--window", "--window-min", "1"],
    ] {
        let out = tracemark(&[&base[..], bad, &[s(&marked)]].concat(), None);
        assert_eq!(code(&out), 2, "{bad:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Unparsable ids: input error.
    assert_eq!(code(&tracemark(&[&base[..], &["-"]].concat(), Some(b"1 two 3"))), 4);
    // --help succeeds and lists every exit code.
    let out = tracemark(&["--help"], None);
    assert_eq!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("5  key error"));
}

/// 80 watermarked tokens inside 3,000 random ones: too few for the whole
/// text, but the window search finds them, and the window decides the verdict
/// of the family (whole text + window, weighted Bonferroni 1/5 + 4/5) and the exit code.
#[test]
fn a_significant_window_decides_the_exit_code() {
    let dir = Dir::new("cli-window");
    let vocab = 20_000;
    let scheme = "kgw:gamma=0.25,delta=4,context=lefthash:1";
    let cfg: SchemeConfig = scheme.parse().expect("cfg");
    let mut rng = Rng::new(903);
    let key = rng.key();
    let key_path = dir.path("k.key");
    key.save(&key_path).expect("save");
    let marked = generate(
        cfg.build(&key, vocab).expect("scheme").as_ref(),
        &[3],
        80,
        &mut rng,
        |_, _| vec![0.0; vocab],
    );
    let mut ids = random_tokens(vocab, 1_500, &mut rng);
    ids.extend_from_slice(&marked);
    ids.extend(random_tokens(vocab, 1_500, &mut rng));
    let input = dir.path("ids.json");
    std::fs::write(&input, serde_json::to_string(&ids).expect("json")).expect("write");
    let vocab = vocab.to_string();
    let base = [
        "detect",
        "--key",
        s(&key_path),
        "--scheme",
        scheme,
        "--vocab",
        &vocab,
        "--ids",
    ];

    // The whole text alone: not detected.
    let out = tracemark(&[&base[..], &[s(&input)]].concat(), None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 1, "{stdout}");
    assert!(stdout.contains("not detected"), "{stdout}");

    // With the window: detected, and the report says the window decided.
    let out = tracemark(&[&base[..], &["--window", s(&input)]].concat(), None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("WATERMARK DETECTED"), "{stdout}");
    let family = stdout.lines().find(|l| l.starts_with("family")).expect("family line");
    assert!(
        family.contains("Bonferroni over 2 tests") && family.contains("decided by the window"),
        "{family}"
    );

    let out = tracemark(&[&base[..], &["--window", "--json", s(&input)]].concat(), None);
    assert_eq!(code(&out), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(report["verdict"], "detected");
    let w = &report["window"];
    assert_eq!(w["decides_verdict"], true);
    let family = w["family_log10_p"].as_f64().expect("family p");
    let whole = report["outcome"]["log10_p"].as_f64().expect("whole p");
    assert!(family < -6.0 && whole > -6.0, "family {family}, whole {whole}");
    // The window search has 4/5 of alpha (SPEC §16 v3).
    assert!((family - (w["log10_p"].as_f64().expect("window p") + 1.25f64.log10())).abs() < 1e-9);
}

#[test]
fn detect_text_with_tokenizer_window_and_keyring() {
    let dir = Dir::new("cli-text");
    let tok = dir.path("tokenizer.json");
    std::fs::write(&tok, word_tokenizer_json(VOCAB)).expect("write");
    let master_path = dir.path("master.key");
    let master = Rng::new(276).key();
    master.save(&master_path).expect("save");
    let cohort2 = master.derive("cohort/2").expect("derive");
    let mut rng = Rng::new(3);
    let mut all = random_tokens(VOCAB, 150, &mut rng);
    all.extend(watermarked_ids(&cohort2, 100, 4));
    all.extend(random_tokens(VOCAB, 150, &mut rng));
    let text_path = dir.path("suspect.txt");
    std::fs::write(&text_path, words(&all)).expect("write");
    let base = [
        "detect",
        "--key",
        s(&master_path),
        "--scheme",
        SCHEME,
        "--tokenizer",
        s(&tok),
    ];

    let out = tracemark(
        &[
            &base[..],
            &[
                "--derive-labels",
                "cohort/0,cohort/1,cohort/2,cohort/3",
                "--alpha",
                "0.01",
                "--window",
                s(&text_path),
            ],
        ]
        .concat(),
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Holm"), "{stdout}");
    let line = stdout.lines().find(|l| l.contains("cohort/2")).expect("cohort/2 line");
    assert!(line.contains("DETECTED") && line.contains("best match"), "{line}");
    assert!(stdout.contains("window") && stdout.contains("Bonferroni"), "{stdout}");

    // Colour on request: green and red marks around scored tokens.
    let out = tracemark(
        &[
            &base[..],
            &["--derive-labels", "cohort/2", "--color", "always", s(&text_path)],
        ]
        .concat(),
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\x1b[42;30m") && stdout.contains("\x1b[41;30m"));

    // Invalid UTF-8 text is an input error naming the offset.
    let bad = dir.path("bad.txt");
    std::fs::write(&bad, b"w1 w2 \xff w3").expect("write");
    let out = tracemark(&[&base[..], &[s(&bad)]].concat(), None);
    assert_eq!(code(&out), 4);
    assert!(String::from_utf8_lossy(&out.stderr).contains("offset 6"));
}

#[test]
fn tampered_text_is_detected_and_the_report_says_what_changed() {
    let dir = Dir::new("cli-tampered");
    let tok = dir.path("tokenizer.json");
    std::fs::write(&tok, word_tokenizer_json(VOCAB)).expect("write");
    let key_path = dir.path("k.key");
    let key = Rng::new(277).key();
    key.save(&key_path).expect("save");
    // A zero-width space after every word and full-width letters.
    let text = words(&watermarked_ids(&key, 150, 5))
        .replace(' ', "\u{200B} ")
        .replace('w', "\u{FF57}");
    let text_path = dir.path("tampered.txt");
    std::fs::write(&text_path, &text).expect("write");
    let base = [
        "detect",
        "--key",
        s(&key_path),
        "--scheme",
        SCHEME,
        "--tokenizer",
        s(&tok),
    ];
    let out = tracemark(&[&base[..], &[s(&text_path)]].concat(), None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for needle in [
        "WATERMARK DETECTED",
        "canonical  299 characters changed",
        "149 invisible removed",
        "U+200B -> removed  x149",
        "U+FF57 -> U+0077  x150",
        "decided by the canonical form",
    ] {
        assert!(stdout.contains(needle), "{needle} missing from\n{stdout}");
    }
    let out = tracemark(&[&base[..], &["--json", s(&text_path)]].concat(), None);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let c = &report["canonical"];
    assert_eq!(c["changes"]["invisible"], 149);
    assert_eq!(c["changes"]["listed"][0]["kind"], "compatibility");
    assert_eq!(c["decided_by"], "canonical");
    // Invisible characters are tampering only: the canonical form alone (SPEC §14.1).
    assert_eq!(c["plan"], "canonical");
    assert_eq!(c["forms"].as_array().map(Vec::len), Some(1));
    // Experts can switch it off; the tampering then defeats the verdict.
    // (Every tampered word is unknown to this word-level tokenizer: inconclusive, exit 3.)
    let out = tracemark(&[&base[..], &["--no-canonicalize", s(&text_path)]].concat(), None);
    assert_eq!(code(&out), 3, "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("canonical"));
}

#[test]
fn scan_and_radioactivity() {
    let dir = Dir::new("cli-scan");
    let key_path = dir.path("k.key");
    let key = Rng::new(341).key();
    key.save(&key_path).expect("save");
    let tok = dir.path("tokenizer.json");
    std::fs::write(&tok, word_tokenizer_json(VOCAB)).expect("write");
    let mut lines = Vec::new();
    for i in 0..6 {
        lines.push(serde_json::json!({"id": i, "text": words(&watermarked_ids(&key, 60, 10 + i))}).to_string());
    }
    lines.push("not json".into());
    lines.push(serde_json::json!({"id": "ids", "ids": random_tokens(VOCAB, 60, &mut Rng::new(5))}).to_string());
    let corpus = dir.path("corpus.jsonl");
    std::fs::write(&corpus, lines.join("\n")).expect("write");
    let results = dir.path("results.jsonl");
    let common = ["--key", s(&key_path), "--scheme", SCHEME, "--tokenizer", s(&tok)];

    let out = tracemark(
        &[
            &["scan"][..],
            &common[..],
            &["--jobs", "2", "--json", "--out", s(&results), s(&corpus)],
        ]
        .concat(),
        None,
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let per_doc: Vec<serde_json::Value> = std::fs::read_to_string(&results)
        .expect("results")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(per_doc.len(), 8);
    assert_eq!(per_doc[6]["line"], 7);
    assert!(per_doc[6]["error"].as_str().expect("error").contains("JSON"));
    assert_eq!(per_doc[0]["verdict"], "detected");
    assert_eq!(per_doc[7]["verdict"], "not_detected");
    // --json: all JSON goes to standard output (here only the summary line,
    // the documents went to --out); nothing on standard error.
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let summary = &summary["summary"];
    assert_eq!(summary["documents"], 8);
    assert_eq!(summary["errors"], 1);
    assert_eq!(summary["detected"], 6);
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));

    // Without --out: one JSON Lines stream on standard output, the documents then the summary.
    let out = tracemark(
        &[&["scan"][..], &common[..], &["--json", "-"]].concat(),
        Some(lines.join("\n").as_bytes()),
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let stream: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(stream.len(), 9);
    assert!(stream[..8].iter().all(|d| d["line"].is_u64()));
    assert_eq!(stream[8]["summary"]["documents"], 8);
    assert_eq!(stream[8]["summary"]["aggregate"]["verdict"], "detected");

    // Without --json: the documents on standard output, the summary for people on standard error.
    let out = tracemark(&[&["scan"][..], &common[..], &[s(&corpus)]].concat(), None);
    assert_eq!(code(&out), 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 8);
    assert!(String::from_utf8_lossy(&out.stderr).contains("aggregate test"));

    let out = tracemark(&[&["radioactivity"][..], &common[..], &[s(&corpus)]].concat(), None);
    assert_eq!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("radioactivity test"));
    let other = dir.path("other.key");
    Key::generate().expect("rng").save(&other).expect("save");
    let out = tracemark(
        &[
            "radioactivity",
            "--key",
            s(&other),
            "--scheme",
            SCHEME,
            "--tokenizer",
            s(&tok),
            s(&corpus),
        ],
        None,
    );
    assert_eq!(code(&out), 1);
}

#[test]
fn forgery_reference_flags_a_watermark_that_sits_only_where_the_reference_is_dense() {
    let dir = Dir::new("cli-forgery");
    let key_path = dir.path("k.key");
    let key = Rng::new(419).key();
    key.save(&key_path).expect("save");
    // A forgery: watermarked where the reference is dense (the first 200
    // tokens, which the reference holds twice), unwatermarked after.
    let marked = watermarked_ids(&key, 200, 7);
    let mut forged = marked.clone();
    forged.extend(random_tokens(VOCAB, 200, &mut Rng::new(8)));
    let reference = dir.path("reference.jsonl");
    let line = serde_json::json!({"prompt_ids": [1], "ids": marked}).to_string();
    std::fs::write(&reference, format!("{line}\n{line}\n")).expect("write");
    let suspect = dir.path("forged.ids");
    std::fs::write(&suspect, serde_json::to_string(&forged).expect("json")).expect("write");
    let vocab = VOCAB.to_string();
    let base = [
        "detect",
        "--ids",
        "--vocab",
        &vocab,
        "--prompt",
        "1",
        "--key",
        s(&key_path),
        "--scheme",
        SCHEME,
    ];
    let other = dir.path("other.key");
    Rng::new(420).key().save(&other).expect("save");
    let with_ref = [&base[..], &["--forgery-reference", s(&reference), s(&suspect)]].concat();
    let out = tracemark(&with_ref, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for needle in ["WATERMARK DETECTED", "forgery    spoof-artifact test", "LOOKS FORGED"] {
        assert!(stdout.contains(needle), "{needle} missing from\n{stdout}");
    }
    let out = tracemark(&[&with_ref[..], &["--json"]].concat(), None);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["forgery"]["artifact"], true);
    assert_eq!(report["forgery"]["reference_documents"], 2);
    // Without a reference there is no forgery section.
    let out = tracemark(&[&base[..], &[s(&suspect)]].concat(), None);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("forgery"));
    // A broken reference line is an input error naming the line; two keys (a keyring) are a usage error.
    std::fs::write(&reference, format!("{line}\n{{not json\n")).expect("write");
    let out = tracemark(&with_ref, None);
    assert_eq!(code(&out), 4, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tracemark(
        &[
            "detect",
            "--ids",
            "--vocab",
            &vocab,
            "--key",
            s(&key_path),
            "--key",
            s(&other),
            "--scheme",
            SCHEME,
            "--forgery-reference",
            s(&reference),
            s(&suspect),
        ],
        None,
    );
    assert_eq!(code(&out), 2, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--forgery-reference tests one key"));
}
