//! Reading keys, inputs and token ids.

use std::io::Read;
use std::path::Path;

use tracemark_core::Key;
use tracemark_verifier::Error;

use crate::exit::Failure;

/// Loads a key file.
pub(crate) fn load_key(path: &Path) -> Result<Key, Failure> {
    Key::load(path).map_err(|error| Failure::Key {
        path: path.to_path_buf(),
        error,
    })
}

/// `standard input` for `-`, else the path.
pub(crate) fn source_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "standard input".to_string()
    } else {
        path.display().to_string()
    }
}

/// The bytes of a file, or of standard input for `-`. `option` names the
/// argument that gave the path (`input`, `--prompt-file`, ...) for errors.
pub(crate) fn read_input(path: &Path, option: &str) -> Result<Vec<u8>, Failure> {
    let named = || {
        if path.as_os_str() == "-" {
            format!("{option} (standard input)")
        } else {
            format!("{option} {}", path.display())
        }
    };
    if path.is_dir() {
        return Err(Failure::Read {
            source: named(),
            error: std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory, not a file"),
        });
    }
    let mut bytes = Vec::new();
    let r = if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes))
    };
    r.map_err(|error| Failure::Read { source: named(), error })?;
    if bytes.is_empty() && path.as_os_str() == "-" {
        return Err(Failure::Usage(format!(
            "{option}: no input was given and standard input is empty; give the file with the suspect text \
             (or pipe it in and pass -)"
        )));
    }
    Ok(bytes)
}

/// What a file that is not UTF-8 text most likely is, and what to do with it.
pub(crate) fn sniff(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    if bytes.starts_with(b"%PDF-") {
        return Some((
            "a PDF document",
            "extract its text first (e.g. `pdftotext FILE out.txt`) and test the text; the layout a PDF adds \
             (line breaks, hyphenation) can weaken the signal, so prefer the original text when you have it",
        ));
    }
    if bytes.starts_with(b"PK\x03\x04") {
        let docx = bytes.windows(5).any(|w| w == b"word/");
        return Some(if docx {
            (
                "a Word document (DOCX)",
                "save it as plain text (UTF-8) in the editor, or extract it (e.g. `pandoc FILE -t plain -o out.txt`), \
                 and test the text",
            )
        } else {
            (
                "a ZIP archive (an office document?)",
                "extract the text as UTF-8 and test the text",
            )
        });
    }
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Some((
            "UTF-16 text",
            "convert it to UTF-8 first (e.g. `iconv -f UTF-16 -t UTF-8 FILE > out.txt`)",
        ));
    }
    // Windows-1252 (or Latin-1): high bytes that are not UTF-8 sequences,
    // mostly in running text.
    let high = bytes.iter().filter(|&&b| b >= 0x80).count();
    let binary = bytes.iter().filter(|&&b| b < 0x09 || (0x0E..0x20).contains(&b)).count();
    if binary == 0 && high > 0 && high * 4 < bytes.len() {
        return Some((
            "text in a legacy 8-bit encoding (Windows-1252 or Latin-1, as older Windows editors save it)",
            "convert it to UTF-8 first (e.g. `iconv -f WINDOWS-1252 -t UTF-8 FILE > out.txt`)",
        ));
    }
    (binary > 0).then_some(("binary data, not text", "give the text itself, or token ids with --ids"))
}

/// A file's text (UTF-8), with a clear error naming `option` and what the
/// file is when it is not text.
pub(crate) fn read_text(path: &Path, option: &str) -> Result<String, Failure> {
    let bytes = read_input(path, option)?;
    text_of(&bytes, path, option)
}

/// `bytes` as UTF-8 text; see [`read_text`].
pub(crate) fn text_of(bytes: &[u8], path: &Path, option: &str) -> Result<String, Failure> {
    let source = format!("{option} {}", source_name(path));
    let offset = match std::str::from_utf8(bytes) {
        Ok(_) => 0,
        Err(e) => e.valid_up_to(),
    };
    utf8(bytes, &source).map_err(|e| match sniff(bytes) {
        Some((what, advice)) => Failure::NotText {
            source,
            what,
            offset,
            advice,
        },
        None => Failure::Verifier(e),
    })
}

/// Token ids: a JSON array, or whitespace-separated numbers.
pub(crate) fn parse_ids(bytes: &[u8], source: &str) -> Result<Vec<u32>, Failure> {
    let text = utf8(bytes, source)?;
    let trimmed = text.trim();
    let ids = if trimmed.starts_with('[') {
        serde_json::from_str::<Vec<u32>>(trimmed).map_err(|e| e.to_string())
    } else {
        trimmed
            .split_whitespace()
            .map(|t| t.parse::<u32>().map_err(|_| format!("{t:?} is not a token id")))
            .collect()
    };
    ids.map_err(|message| Failure::Malformed {
        source: source.to_string(),
        message,
    })
}

/// Reads bytes as UTF-8 text, naming `source` in the error.
fn utf8(bytes: &[u8], source: &str) -> Result<String, Error> {
    String::from_utf8(bytes.to_vec()).map_err(|e| Error::InvalidUtf8 {
        source: source.to_string(),
        valid_up_to: e.utf8_error().valid_up_to(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_names_the_source_and_the_first_bad_byte() {
        assert_eq!(utf8(b"ok", "input").as_deref(), Ok("ok"));
        match utf8(b"ok \xff\xfe", "input") {
            Err(Error::InvalidUtf8 { source, valid_up_to }) => assert_eq!((source.as_str(), valid_up_to), ("input", 3)),
            other => panic!("expected InvalidUtf8, got {other:?}"),
        }
    }
}
