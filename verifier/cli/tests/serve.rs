//! `tracemark serve` on loopback: tokens, rate and size limits, the same
//! p-values as the CLI, streaming sessions equal to batch detection, scans,
//! and logs and responses free of key material and texts.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::server::{Server, SCHEME, SLOW_TOKEN, TOKEN, VOCAB};
use support::{generate, random_tokens, words, Dir, Rng};
use tracemark_core::{Key, SchemeConfig};

fn watermarked(key: &Key, n: usize, seed: u64) -> Vec<u32> {
    let cfg: SchemeConfig = SCHEME.parse().expect("cfg");
    let scheme = cfg.build(key, VOCAB).expect("scheme");
    let mut rng = Rng::new(seed);
    generate(scheme.as_ref(), &[1], n, &mut rng, |_, r| {
        random_tokens(VOCAB, VOCAB, r)
            .iter()
            .map(|&t| (t % 7) as f32 * 0.3)
            .collect()
    })
}

fn cli(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_tracemark"))
        .args(args)
        .output()
        .expect("runs");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn tokens_limits_and_the_same_p_value_as_the_cli() {
    let dir = Dir::new("serve-limits");
    let key = Key::from_bytes([42; 32]);
    let key_path = dir.path("alpha.key");
    key.save(&key_path).expect("save");
    let server = Server::start(&dir, &[&key_path], &["--max-body", "20000"]);

    // Health and the description need no token; everything under /v1 does.
    assert_eq!(server.request("GET", "/health", None, None).0, 200);
    let (status, spec, _) = server.request("GET", "/openapi.json", None, None);
    assert_eq!(status, 200);
    let spec: Value = serde_json::from_slice(&spec).expect("openapi json");
    assert_eq!(spec["openapi"], "3.0.3");
    let (status, _, headers) = server.request("GET", "/v1/keys", None, None);
    assert_eq!(status, 401);
    assert!(
        headers.to_ascii_lowercase().contains("www-authenticate: bearer"),
        "{headers}"
    );
    assert_eq!(server.request("GET", "/v1/keys", Some("wrong"), None).0, 401);
    assert_eq!(server.request("POST", "/v1/detect", Some("wrong"), Some(b"{}")).0, 401);

    // Keys are listed by id and label only.
    let (status, keys) = server.json("GET", "/v1/keys", None);
    assert_eq!(status, 200);
    assert_eq!(keys["keys"][0]["key_id"], key.id().to_string());
    assert_eq!(keys["keys"][0]["label"], "alpha");

    // The same report as `tracemark detect --json`, for ids and for text.
    let ids = watermarked(&key, 300, 7);
    let (status, served) = server.json("POST", "/v1/detect", Some(&json!({ "ids": ids, "prompt_ids": [1] })));
    assert_eq!(status, 200, "{served}");
    let ids_file = dir.path("ids.json");
    std::fs::write(&ids_file, serde_json::to_vec(&ids).expect("json")).expect("write");
    let k = key_path.to_str().expect("path");
    let local = cli(&[
        "detect",
        "--json",
        "--key",
        k,
        "--scheme",
        SCHEME,
        "--vocab",
        "3000",
        "--ids",
        "--prompt",
        "1",
        ids_file.to_str().expect("path"),
    ]);
    assert_eq!(served["verdict"], "detected");
    assert_eq!(served["outcome"], local["outcome"]);
    assert_eq!(served["counts"], local["counts"]);
    let text = words(&ids);
    let (status, served) = server.json("POST", "/v1/detect", Some(&json!({ "text": text, "prompt": "w1" })));
    assert_eq!(status, 200, "{served}");
    let text_file = dir.path("text.txt");
    std::fs::write(&text_file, &text).expect("write");
    let tok = dir.path("tokenizer.json");
    let local = cli(&[
        "detect",
        "--json",
        "--key",
        k,
        "--scheme",
        SCHEME,
        "--tokenizer",
        tok.to_str().expect("path"),
        "--prompt",
        "w1",
        text_file.to_str().expect("path"),
    ]);
    // Where the scheme came from (here --scheme, the key having no serving manifest) included.
    assert_eq!(served, local);
    assert!(served["scheme_source"]["origin"].is_string(), "{served}");

    // Malformed requests are typed errors, never 5xx.
    for bad in [
        json!({}),
        json!({"text": "w1", "ids": [1]}),
        json!({"ids": [1], "nonsense": 1}),
        json!({"ids": "x"}),
    ] {
        let (status, body) = server.json("POST", "/v1/detect", Some(&bad));
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]["code"].is_string());
    }
    let (status, body) = server.json("POST", "/v1/detect", Some(&json!({ "ids": [VOCAB + 5] })));
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("wrong_tokenizer")));
    let (status, _) = server.json("POST", "/v1/detect", Some(&json!({ "ids": [1, 2], "key_id": "nope" })));
    assert_eq!(status, 404);

    // 413 above the size limit, before any work.
    let big = json!({ "ids": vec![5u32; 20_000] });
    let (status, body) = server.json("POST", "/v1/detect", Some(&big));
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("too_large")));

    // 429 past the limit: "slow" may make 3 requests at once, then one a minute.
    let statuses: Vec<u16> = (0..5)
        .map(|_| server.request("GET", "/v1/keys", Some(SLOW_TOKEN), None).0)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let (_, _, headers) = server.request("GET", "/v1/keys", Some(SLOW_TOKEN), None);
    assert!(headers.to_ascii_lowercase().contains("retry-after:"), "{headers}");
    // Another token is not limited by it.
    assert_eq!(server.json("GET", "/v1/keys", None).0, 200);

    // Logs: JSON lines with the token's name, never the token, key bytes or texts.
    let log = server.log();
    assert!(log.contains("\"token\":\"alice\""), "{log}");
    let secret_hex: String = key.secret_bytes().iter().map(|b| format!("{b:02x}")).collect();
    for forbidden in [TOKEN, SLOW_TOKEN, secret_hex.as_str(), &text[..40]] {
        assert!(!log.contains(forbidden), "the log holds {forbidden:?}");
    }
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    // An access-log line for every status code answered, with method, path and outcome.
    for status in [200, 400, 401, 404, 413, 422, 429] {
        assert!(
            lines.iter().any(|l| l["fields"]["status"] == status
                && l["fields"]["method"].is_string()
                && l["fields"]["path"].is_string()
                && l["fields"]["outcome"].is_string()),
            "no log line for {status}: {log}"
        );
    }

    // A flood of 429s: a few lines, then one line with the count per interval.
    let before = server.log().lines().count();
    for _ in 0..300 {
        assert_eq!(server.request("GET", "/v1/keys", Some(SLOW_TOKEN), None).0, 429);
    }
    let written = server.log().lines().count() - before;
    assert!(written <= 12, "300 refusals wrote {written} lines");
}

#[test]
fn streams_equal_batch_scans_and_keyrings() {
    let dir = Dir::new("serve-streams");
    let a = Key::from_bytes([1; 32]);
    let b = Key::from_bytes([2; 32]);
    let (pa, pb) = (dir.path("a.key"), dir.path("b.key"));
    a.save(&pa).expect("save");
    b.save(&pb).expect("save");
    let server = Server::start(&dir, &[&pa, &pb], &[]);
    let ids = watermarked(&b, 240, 11);

    // A stream of b's key: after every chunk, the running report is the batch report of the ids so far.
    let (status, opened) = server.json(
        "POST",
        "/v1/streams",
        Some(&json!({ "key_id": "b", "prompt_ids": [1] })),
    );
    assert_eq!(status, 201, "{opened}");
    let id = opened["stream_id"].as_str().expect("id").to_string();
    assert_eq!(opened["report"], Value::Null);
    let mut at = 0;
    for chunk in [1usize, 7, 16, 40, 64, 112] {
        let end = (at + chunk).min(ids.len());
        let (status, running) = server.json(
            "POST",
            &format!("/v1/streams/{id}"),
            Some(&json!({ "ids": &ids[at..end] })),
        );
        assert_eq!(status, 200, "{running}");
        at = end;
        let (_, batch) = server.json(
            "POST",
            "/v1/detect",
            Some(&json!({ "ids": &ids[..at], "prompt_ids": [1], "key_id": "b" })),
        );
        assert_eq!(running["report"], batch, "after {at} tokens");
        assert_eq!(running["tokens"], at);
    }
    let (status, last) = server.json("DELETE", &format!("/v1/streams/{id}"), None);
    assert_eq!((status, last["report"]["verdict"].as_str()), (200, Some("detected")));
    assert_eq!(server.json("GET", &format!("/v1/streams/{id}"), None).0, 404);

    // Without a key id, every key is tested with Holm's correction; b is named.
    let (status, ring) = server.json("POST", "/v1/detect", Some(&json!({ "ids": ids, "prompt_ids": [1] })));
    assert_eq!(status, 200, "{ring}");
    assert_eq!(ring["keys"][1]["label"], "b");
    assert_eq!(ring["keys"][1]["tested"]["detected"], true);
    assert_eq!(ring["keys"][0]["tested"]["detected"], false);

    // A JSONL scan: the same summary as `tracemark scan`, bad lines reported, not dropped.
    let corpus = format!(
        "{}\n{}\nnot json\n{}\n",
        json!({ "ids": ids }),
        json!({ "text": words(&watermarked(&b, 120, 12)) }),
        json!({ "ids": random_tokens(VOCAB, 200, &mut Rng::new(3)) })
    );
    let (status, body, _) = server.request("POST", "/v1/scan?key_id=b", Some(TOKEN), Some(corpus.as_bytes()));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let scanned: Value = serde_json::from_slice(&body).expect("json");
    let corpus_file = dir.path("corpus.jsonl");
    std::fs::write(&corpus_file, &corpus).expect("write");
    let tok = dir.path("tokenizer.json");
    let out = Command::new(env!("CARGO_BIN_EXE_tracemark"))
        .args([
            "scan",
            "--json",
            "--key",
            pb.to_str().expect("p"),
            "--scheme",
            SCHEME,
            "--tokenizer",
            tok.to_str().expect("p"),
            corpus_file.to_str().expect("p"),
        ])
        .output()
        .expect("runs");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    let local_summary = &lines.last().expect("summary")["summary"];
    assert_eq!(
        scanned["summary"]["aggregate"]["outcome"],
        local_summary["aggregate"]["outcome"]
    );
    assert_eq!(scanned["summary"]["errors"], 1);
    assert_eq!(scanned["documents"].as_array().map(Vec::len), Some(4));
    assert_eq!(scanned["documents"][2]["line"], 3);
    assert!(scanned["documents"][2]["error"].is_string());
}

/// Seconds until the server closes `s` (reads until EOF or a reset).
fn closed_after(mut s: TcpStream) -> (f64, Vec<u8>) {
    let t0 = std::time::Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    (t0.elapsed().as_secs_f64(), raw)
}

#[test]
fn idle_and_slow_connections_are_closed_and_shutdown_has_a_deadline() {
    let dir = Dir::new("serve-connections");
    let key = Key::from_bytes([7; 32]);
    let key_path = dir.path("k.key");
    key.save(&key_path).expect("save");
    let mut server = Server::start(
        &dir,
        &[&key_path],
        &[
            "--header-timeout",
            "1",
            "--body-timeout",
            "1",
            "--shutdown-timeout",
            "2",
        ],
    );

    // A connection that sends nothing, and one that never ends its headers: closed by the header timeout.
    let idle = TcpStream::connect(&server.addr).expect("connects");
    let mut partial = TcpStream::connect(&server.addr).expect("connects");
    partial
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .expect("writes");
    let (t, raw) = closed_after(idle);
    assert!(t < 3.0 && raw.is_empty(), "idle connection open {t} s");
    let (t, _) = closed_after(partial);
    assert!(t < 3.0, "half-sent headers held {t} s");

    // A body that never arrives: 408 after the body timeout, and the connection closes.
    let mut slow = TcpStream::connect(&server.addr).expect("connects");
    slow.write_all(
        format!(
            "POST /v1/detect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n{{\"ids\""
        )
        .as_bytes(),
    )
    .expect("writes");
    let (t, raw) = closed_after(slow);
    let head = String::from_utf8_lossy(&raw);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(t < 3.0, "slow body held {t} s");

    // The service still answers.
    assert_eq!(server.request("GET", "/health", None, None).0, 200);

    // SIGTERM with a client holding a half-sent request: the process ends within the deadline.
    let mut holder = TcpStream::connect(&server.addr).expect("connects");
    holder
        .write_all(
            format!(
                "POST /v1/detect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n"
            )
            .as_bytes(),
        )
        .expect("writes");
    std::thread::sleep(Duration::from_millis(100));
    let t0 = std::time::Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    let status = server.child.wait().expect("waits");
    assert!(status.success(), "{status:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "shutdown took {:?}",
        t0.elapsed()
    );
    drop(holder);
}
