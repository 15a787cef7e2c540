"""tracemark.serving: the server's keys and the request arguments every
serving integration reads (vLLM, SGLang, llama.cpp)."""

import pytest

import tracemark as tm
from tracemark.serving import RequestArgsError, ServerKeys, ServingConfigError, validate_request_args, window

KGW = "kgw:gamma=0.25,delta=2,context=lefthash:1"


@pytest.fixture
def key_file(tmp_path):
    key = tm.Key.generate()
    path = tmp_path / "master.key"
    key.save(path)
    return key, str(path)


def test_from_env_loads_the_key_and_scheme(key_file):
    key, path = key_file
    keys = ServerKeys.from_env({"TRACEMARK_KEY_FILE": path, "TRACEMARK_SCHEME": KGW})
    assert keys.master == key and str(keys.config) == KGW and keys.width == 1 and keys.unlabelled == "master"
    over = ServerKeys.from_env({}, overrides={"key_file": path, "scheme": KGW, "unlabelled": "off"})
    assert over.unlabelled == "off"


@pytest.mark.parametrize(
    "env, match",
    [
        ({"TRACEMARK_SCHEME": KGW}, "TRACEMARK_KEY_FILE"),
        ({"TRACEMARK_KEY_FILE": "KEY"}, "TRACEMARK_SCHEME"),
        ({"TRACEMARK_KEY_FILE": "KEY", "TRACEMARK_SCHEME": "kgw:gamma=2"}, "TRACEMARK_SCHEME"),
        ({"TRACEMARK_KEY_FILE": "/nonexistent/key", "TRACEMARK_SCHEME": KGW}, "cannot load the key file"),
        ({"TRACEMARK_KEY_FILE": "KEY", "TRACEMARK_SCHEME": KGW, "TRACEMARK_UNLABELLED": "a b"}, "TRACEMARK_UNLABELLED"),
    ],
)
def test_a_wrong_configuration_is_a_clear_error_without_key_bytes(env, match, key_file):
    key, path = key_file
    env = {k: (path if v == "KEY" else v) for k, v in env.items()}
    with pytest.raises(ServingConfigError, match=match) as e:
        ServerKeys.from_env(env)
    assert key.secret_bytes().hex() not in str(e.value)


def test_a_corrupt_key_file_does_not_echo_its_bytes(tmp_path):
    path = tmp_path / "bad.key"
    secret = "ab" * 32
    path.write_text(f"tracemark-key-v1:{secret}:00000000\n")
    with pytest.raises(ServingConfigError) as e:
        ServerKeys.from_env({"TRACEMARK_KEY_FILE": str(path), "TRACEMARK_SCHEME": KGW})
    assert secret not in str(e.value)


def test_labels_opt_outs_and_the_unlabelled_policy(key_file):
    key, _ = key_file
    keys = ServerKeys(key, KGW)
    assert keys.label_for(None) == (True, None)
    assert keys.label_for({"tracemark_label": "account/42"}) == (True, "account/42")
    assert keys.label_for({"tracemark": "off", "tracemark_label": "account/42"}) == (False, None)
    assert keys.label_for({"tracemark": {"label": "cohort/3"}}) == (True, "cohort/3")
    assert keys.label_for({"tracemark": {"enabled": False}}) == (False, None)
    assert keys.label_for({"unrelated": 1}) == (True, None)
    off = ServerKeys(key, KGW, unlabelled="off")
    assert off.label_for(None) == (False, None)
    assert off.label_for({"tracemark": "on"}) == (True, None)
    assert off.request_scheme(None, 100) is None
    cohort = ServerKeys(key, KGW, unlabelled="cohort/default")
    assert cohort.label_for({}) == (True, "cohort/default")
    assert cohort.request_scheme({}, 100).key_id == key.derive("cohort/default").id


@pytest.mark.parametrize(
    "args, match",
    [
        ({"tracemark_label": "two words"}, "tracemark_label"),
        ({"tracemark_label": 42}, "must be a string"),
        ({"tracemark_label": "x" * 129}, "tracemark_label"),
        ({"tracemark": "maybe"}, '"on" or "off"'),
        ({"tracemark": {"enabled": "no"}}, "true or false"),
        ({"tracemark": {"key": "00" * 32}}, "unknown tracemark arguments"),
    ],
)
def test_malformed_request_arguments_are_refused(args, match):
    with pytest.raises(RequestArgsError, match=match):
        validate_request_args(args)


def test_derived_schemes_are_cached_and_bounded(key_file):
    key, _ = key_file
    keys = ServerKeys(key, KGW, cache_size=2)
    a = keys.scheme_for("account/1", 100)
    assert keys.scheme_for("account/1", 100) is a
    assert a.key_id == key.derive("account/1").id
    keys.scheme_for("account/2", 100)
    keys.scheme_for("account/3", 100)
    assert len(keys._cache) == 2 and keys.scheme_for("account/1", 100) is not a
    assert keys.scheme_for(None, 100).key_id == key.id


def test_window_reads_only_the_last_ids():
    assert window([1, 2, 3], [4, 5], 3) == [3, 4, 5]
    assert window([1, 2, 3], [4, 5], 2) == [4, 5]
    assert window([1], [], 4) == [1]
    assert window(None, [7], 2) == [7]
    assert window([1, 2], [3], 0) == []


def test_an_admitted_request_with_a_malformed_label_is_watermarked_as_unlabelled(key_file):
    key, _ = key_file
    keys = ServerKeys(key, KGW)
    with pytest.raises(RequestArgsError):
        keys.label_for({"tracemark_label": "two words"})
    assert keys.label_for({"tracemark_label": "two words"}, strict=False) == (True, None)
    assert keys.label_for({"tracemark": "maybe"}, strict=False) == (True, None)
