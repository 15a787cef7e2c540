//! `tracemark report`: the HTML page and its sealed JSON for every kind of
//! test, the same numbers as the test's own `--json`, a seal that breaks on
//! any change, escaping, and a 100,000-token report.

mod support;

use serde_json::{json, Value};
use support::{generate, random_tokens, s, tracemark, word_tokenizer_json, words, Dir, Rng};
use tracemark_core::{Key, SchemeConfig};
use tracemark_verifier::report::Report;

const SCHEME: &str = "kgw:gamma=0.25,delta=2,context=lefthash:1";
const VOCAB: usize = 3000;

fn watermarked(key: &Key, n: usize, seed: u64) -> Vec<u32> {
    let cfg: SchemeConfig = SCHEME.parse().expect("cfg");
    let scheme = cfg.build(key, VOCAB).expect("scheme");
    generate(scheme.as_ref(), &[1], n, &mut Rng::new(seed), |_, r| {
        (0..VOCAB).map(|_| r.uniform() as f32 * 2.0).collect()
    })
}

/// Runs `report --out <name>.html <args>`; the page, the JSON, and the exit code.
fn report(dir: &Dir, name: &str, args: &[&str]) -> (String, Value, i32) {
    let html = dir.path(&format!("{name}.html"));
    let out = tracemark(&[&["report", "--out", s(&html)][..], args].concat());
    let code = out.status.code().expect("code");
    assert!(
        html.exists(),
        "{name}: no page written: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).expect("html");
    let raw = std::fs::read_to_string(html.with_extension("json")).expect("json");
    let parsed: Report = serde_json::from_str(&raw).expect("a report");
    assert!(parsed.check_seal().expect("digest"), "{name}: seal does not hold");
    assert!(page.contains(&parsed.report_sha256), "{name}: page lacks the seal");
    for forbidden in ["http://", "https://", "<link", "src="] {
        assert!(!page.contains(forbidden), "{name}: the page would fetch ({forbidden})");
    }
    (page, serde_json::from_str(&raw).expect("json"), code)
}

fn json_of(args: &[&str]) -> Value {
    let out = tracemark(args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn every_kind_of_report_with_the_same_numbers_as_json() {
    let dir = Dir::new("report-kinds");
    let key = Rng::new(77).key();
    let key_path = dir.path("served.key");
    key.save(&key_path).expect("save");
    let other_path = dir.path("other.key");
    Rng::new(78).key().save(&other_path).expect("save");
    let tok = dir.path("tokenizer.json");
    std::fs::write(&tok, word_tokenizer_json(VOCAB)).expect("write");
    let text_path = dir.path("suspect.txt");
    // A tampered text: a zero-width space and a Cyrillic look-alike, undone by canonicalisation.
    let text = format!("{}\u{200b} w1 w2", words(&watermarked(&key, 200, 3)));
    std::fs::write(&text_path, &text).expect("write");
    let common = ["--key", s(&key_path), "--scheme", SCHEME, "--tokenizer", s(&tok)];

    // Detected, with a window; the detection is the one `detect --json --window` prints, marks added.
    let args = [&["detect"][..], &common[..], &["--window", s(&text_path)]].concat();
    let (page, r, code) = report(&dir, "detected", &args);
    assert_eq!(code, 0);
    assert_eq!(r["kind"], "detection");
    assert_eq!(r["verdict"], "detected");
    let plain = json_of(&[&["detect", "--json"][..], &common[..], &["--window", s(&text_path)]].concat());
    for field in [
        "outcome",
        "counts",
        "window",
        "canonical",
        "key_id",
        "scheme",
        "tokenizer",
        "input_sha256",
    ] {
        assert_eq!(r["detection"][field], plain[field], "{field}");
    }
    // The zero-width space is tampering, so the canonical form alone is tested (SPEC §14.1): its
    // 203 tokens, the first without a context, give 202 marks.
    assert_eq!(r["detection"]["marks"].as_array().map(Vec::len), Some(202));
    assert_eq!(r["text"], text);
    assert_eq!(r["subject"]["name"], s(&text_path));
    assert!(r["command"].as_str().expect("command").contains("report --out"));
    assert!(page.contains(r#"data-verdict="detected""#) && page.contains(r#"id="verdict">Watermark detected<"#));
    assert!(page.contains("What it does not mean") && page.contains("most significant window"));
    assert!(page.contains("1 character was changed"), "canonicalisation section");
    assert!(
        page.contains("1 change is of the kind tampering makes"),
        "a zero-width space is tampering"
    );

    // Not detected (another key) and inconclusive (too short).
    let args = [
        &[
            "detect",
            "--key",
            s(&other_path),
            "--scheme",
            SCHEME,
            "--tokenizer",
            s(&tok),
        ][..],
        &[s(&text_path)],
    ]
    .concat();
    let (page, r, code) = report(&dir, "not-detected", &args);
    assert_eq!((code, r["verdict"].as_str()), (1, Some("not_detected")));
    assert!(page.contains(r#"id="verdict">Not detected<"#));
    assert!(
        page.contains(r#"id="checklist""#),
        "a not-detected page says what to check"
    );
    let short = dir.path("short.txt");
    std::fs::write(&short, "w1 w2 w3").expect("write");
    let (page, r, code) = report(
        &dir,
        "inconclusive",
        &[&["detect"][..], &common[..], &[s(&short)]].concat(),
    );
    assert_eq!((code, r["verdict"].as_str()), (3, Some("inconclusive")));
    assert!(page.contains(r#"id="verdict">Inconclusive<"#) && page.contains("could be scored"));

    // A keyring: the right key is named.
    let args = [
        &[
            "detect",
            "--key",
            s(&other_path),
            "--key",
            s(&key_path),
            "--scheme",
            SCHEME,
            "--tokenizer",
            s(&tok),
        ][..],
        &[s(&text_path)],
    ]
    .concat();
    let (page, r, code) = report(&dir, "keyring", &args);
    assert_eq!((code, r["kind"].as_str()), (0, Some("keyring")));
    assert_eq!(r["keyring"]["keys"][1]["tested"]["detected"], true);
    assert!(page.contains("Keys tested"));

    // A corpus scan, with a bad line reported.
    let mut lines = Vec::new();
    for i in 0..4 {
        lines.push(json!({ "id": i, "text": words(&watermarked(&key, 80, 20 + i)) }).to_string());
    }
    lines.push("{not json".into());
    lines.push(json!({ "id": "<b>human</b>", "ids": random_tokens(VOCAB, 80, &mut Rng::new(5)) }).to_string());
    // A zero-width space (tampering): the canonical form alone is tested.
    let tampered = words(&watermarked(&key, 80, 30)).replacen(' ', "\u{200b} ", 1);
    lines.push(json!({ "id": "zw", "text": tampered }).to_string());
    let corpus = dir.path("corpus.jsonl");
    std::fs::write(&corpus, lines.join("\n")).expect("write");
    let (page, r, code) = report(&dir, "scan", &[&["scan"][..], &common[..], &[s(&corpus)]].concat());
    assert_eq!((code, r["kind"].as_str()), (0, Some("scan")));
    let scan = json_of(
        &[
            &["scan", "--json", "--out", s(&dir.path("docs.jsonl"))][..],
            &common[..],
            &[s(&corpus)],
        ]
        .concat(),
    );
    assert_eq!(r["scan"]["summary"], scan["summary"]);
    assert_eq!(r["scan"]["documents"].as_array().map(Vec::len), Some(7));
    assert!(page.contains("form tested: canonical"), "the plan is on the page");
    assert!(
        page.contains("&lt;b&gt;human") && !page.contains("<b>human"),
        "ids are escaped"
    );
    assert!(page.contains(r#"id="documents""#));

    // Radioactivity: one key, then cohorts.
    let (page, r, code) = report(
        &dir,
        "radioactivity",
        &[&["radioactivity"][..], &common[..], &[s(&corpus)]].concat(),
    );
    assert_eq!((code, r["kind"].as_str()), (0, Some("radioactivity")));
    let radio = json_of(&[&["radioactivity", "--json"][..], &common[..], &[s(&corpus)]].concat());
    assert_eq!(r["radioactivity"]["detection"], radio);
    assert!(page.contains("radioactivity report"));
    let args = [
        &[
            "radioactivity",
            "--key",
            s(&other_path),
            "--key",
            s(&key_path),
            "--scheme",
            SCHEME,
            "--tokenizer",
            s(&tok),
        ][..],
        &[s(&corpus)],
    ]
    .concat();
    let (page, r, code) = report(&dir, "cohorts", &args);
    assert_eq!((code, r["verdict"].as_str()), (0, Some("detected")));
    assert_eq!(r["radioactivity"]["attribution"]["named"], json!([s(&key_path)]));
    assert!(page.contains("Cohorts"));

    // The seal breaks on any change.
    let raw = std::fs::read_to_string(dir.path("detected.json")).expect("json");
    let mut tampered: Report =
        serde_json::from_str(&raw.replacen("\"detected\"", "\"not_detected\"", 1)).expect("parses");
    assert!(!tampered.check_seal().expect("digest"));
    tampered.seal().expect("reseal");
    assert!(tampered.check_seal().expect("digest"));

    // Usage: the page must end in .html; a corpus must be a file.
    let out = tracemark(
        &[
            &["report", "--out", s(&dir.path("x.txt")), "detect"][..],
            &common[..],
            &[s(&text_path)],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(2));
    let out = tracemark(
        &[
            &["report", "--out", s(&dir.path("x.html")), "scan"][..],
            &common[..],
            &["-"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_100k_token_report_is_written_in_blocks() {
    let dir = Dir::new("report-large");
    let key = Rng::new(91).key();
    let key_path = dir.path("k.key");
    key.save(&key_path).expect("save");
    let ids = watermarked(&key, 100_000, 5);
    let ids_path = dir.path("ids.txt");
    std::fs::write(&ids_path, ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")).expect("write");
    let started = std::time::Instant::now();
    let (page, r, code) = report(
        &dir,
        "large",
        &[
            "detect",
            "--key",
            s(&key_path),
            "--scheme",
            SCHEME,
            "--vocab",
            "3000",
            "--ids",
            s(&ids_path),
        ],
    );
    assert_eq!((code, r["verdict"].as_str()), (0, Some("detected")));
    assert_eq!(r["detection"]["marks"].as_array().map(Vec::len), Some(100_000));
    // Blocks of about 400 tokens, each laid out only when scrolled into view.
    let blocks = page.matches(r#"<div class="blk">"#).count();
    assert!((200..=300).contains(&blocks), "{blocks} blocks");
    assert!(page.len() < 8 << 20, "{} bytes", page.len());
    eprintln!("100k-token report in {:?}, {} bytes", started.elapsed(), page.len());
}

/// A key's serving manifest fixes the scheme: tests take it by default, and a
/// different --scheme is tested with a warning on standard error, in the
/// output and in the report; a manifest for another key is refused. A text
/// whose only change is a leading byte-order mark is normalisation, not
/// tampering (issue 29's bars).
#[test]
fn the_served_scheme_binds_and_a_bom_is_not_tampering() {
    let dir = Dir::new("served");
    let key = Rng::new(91).key();
    let key_path = dir.path("served.key");
    key.save(&key_path).expect("save");
    let tok = dir.path("tokenizer.json");
    std::fs::write(&tok, word_tokenizer_json(VOCAB)).expect("write");
    let out = tracemark(&["serving", "--key", s(&key_path), "--scheme", SCHEME]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest = dir.path("served.key.serving.json");
    assert!(std::fs::read_to_string(&manifest).expect("manifest").contains(SCHEME));

    // A text with a byte-order mark in front.
    let text_path = dir.path("bom.txt");
    let text = format!("\u{feff}{}", words(&watermarked(&key, 200, 5)));
    std::fs::write(&text_path, &text).expect("write");

    // No --scheme: the manifest's, said where it came from.
    let base = ["--key", s(&key_path), "--tokenizer", s(&tok)];
    let out = tracemark(&[&["detect", "--color", "never"][..], &base[..], &[s(&text_path)]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("from the key's serving manifest"), "{stdout}");
    assert!(!stdout.contains("WARNING"), "{stdout}");
    assert!(
        stdout.contains("1 character changed") && stdout.contains("All are normalisation"),
        "{stdout}"
    );
    assert!(!stdout.contains("tampering makes"), "{stdout}");
    let (page, r, _) = report(&dir, "bom", &[&["detect"][..], &base[..], &[s(&text_path)]].concat());
    assert_eq!(r["detection"]["canonical"]["changes"]["normalisation"], 1);
    assert!(page.contains("1 character was changed"), "BOM section");
    assert!(
        !page.contains("tampering makes") && !page.contains(r#"class="note alarm""#),
        "a BOM is not tampering"
    );
    assert!(page.contains("from the key&#x27;s serving manifest") || page.contains("from the key's serving manifest"));

    // Another scheme: tested, with a warning everywhere.
    let other = "kgw:gamma=0.5,delta=2,context=lefthash:1";
    let shop = [&base[..], &["--scheme", other, s(&text_path)]].concat();
    let out = tracemark(&[&["detect", "--color", "never"][..], &shop[..]].concat());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stderr.contains("WARNING: the scheme tested"), "{stderr}");
    assert!(
        stdout.contains("WARNING    the scheme tested") && stdout.contains("NOT the scheme the key was served with")
    );
    let json = json_of(&[&["detect", "--json"][..], &shop[..]].concat());
    assert!(json["scheme_source"]["warning"]
        .as_str()
        .expect("warning")
        .contains(SCHEME));
    let (page, _, _) = report(&dir, "shopped", &[&["detect"][..], &shop[..]].concat());
    assert!(page.contains(r#"id="scheme-warning""#), "the report warns");

    // A manifest moved beside another key is refused (a key error).
    let other_key = dir.path("other.key");
    Rng::new(92).key().save(&other_key).expect("save");
    std::fs::copy(&manifest, dir.path("other.key.serving.json")).expect("copy");
    let out = tracemark(&["detect", "--key", s(&other_key), "--tokenizer", s(&tok), s(&text_path)]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to key"));
    // Without a manifest and without --scheme: a usage error naming both ways out.
    let bare = dir.path("bare.key");
    Rng::new(93).key().save(&bare).expect("save");
    let out = tracemark(&["detect", "--key", s(&bare), "--tokenizer", s(&tok), s(&text_path)]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--scheme") && stderr.contains("tracemark serving"),
        "{stderr}"
    );
}
