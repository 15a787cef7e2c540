//! `tracemark serve` on loopback for the command's tests: started on a free
//! port with a word tokenizer and two API tokens, stopped when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{word_tokenizer_json, Dir};

/// The scheme every test service tests with.
pub const SCHEME: &str = "kgw:gamma=0.25,delta=2,context=lefthash:1";
/// The word tokenizer's vocabulary.
pub const VOCAB: usize = 3000;
/// An API token with a generous allowance.
pub const TOKEN: &str = "test-token-alice";
/// An API token allowed one request a minute, burst 3.
pub const SLOW_TOKEN: &str = "test-token-slow";

pub fn sha256(s: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A running service, stopped when dropped; its standard error is kept.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub stderr: PathBuf,
}

impl Server {
    pub fn start(dir: &Dir, keys: &[&Path], extra: &[&str]) -> Self {
        let tokens = dir.path("tokens.txt");
        std::fs::write(
            &tokens,
            format!(
                "# name and digest only\nsha256:{} alice 6000 1000\nsha256:{} slow 1 3\n",
                sha256(TOKEN),
                sha256(SLOW_TOKEN)
            ),
        )
        .expect("tokens");
        let tokenizer = dir.path("tokenizer.json");
        std::fs::write(&tokenizer, word_tokenizer_json(VOCAB)).expect("tokenizer");
        let stderr = dir.path("serve.log");
        let mut args: Vec<String> = vec!["serve".into(), "--listen".into(), "127.0.0.1:0".into()];
        for k in keys {
            args.extend(["--key".into(), k.display().to_string()]);
        }
        args.extend(
            [
                "--scheme",
                SCHEME,
                "--tokenizer",
                tokenizer.to_str().expect("path"),
                "--tokens",
                tokens.to_str().expect("path"),
                "--threads",
                "2",
            ]
            .map(String::from),
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_tracemark"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("log file"))
            .spawn()
            .expect("starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("address line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server { child, addr, stderr }
    }

    /// One HTTP/1.1 request; the status and the body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> (u16, Vec<u8>, String) {
        let mut s = TcpStream::connect(&self.addr).expect("connects");
        s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).expect("writes");
        if let Some(b) = body {
            // The server may answer (413) and close before it reads all of a large body.
            let _ = s.write_all(b);
        }
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("header end");
        let headers = String::from_utf8_lossy(&raw[..split]).to_string();
        let status: u16 = headers.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status");
        let mut body = raw[split + 4..].to_vec();
        if headers.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        (status, body, headers)
    }

    pub fn json(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
        let (status, body, _) = self.request(method, path, Some(TOKEN), bytes.as_deref());
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&b[..end]).unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[end + 2..end + 2 + size]);
        b = &b[end + 2 + size + 2..];
    }
    out
}
