"""The published and cross-language vectors through the Python API: RFC 9605's SFrame
vectors, and the room key schedule's vectors (room secret to sealed frames), bit-exact."""

import json

import pytest

import sealroom
from conftest import ROOT

DATA = ROOT / "crates" / "sealroom-crypto" / "tests" / "data"


def unhex(text: str) -> bytes:
    return bytes.fromhex(text)


def rfc_vectors():
    return json.loads((DATA / "rfc9605-test-vectors.json").read_text())["sframe"]


def schedule_cases():
    return json.loads((DATA / "room-key-schedule.json").read_text())["cases"]


def test_there_are_vectors_for_all_five_suites():
    assert sorted(v["cipher_suite"] for v in rfc_vectors()) == [1, 2, 3, 4, 5]
    assert {c["cipher_suite"] for c in schedule_cases()} == {1, 2, 3, 4, 5}


@pytest.mark.parametrize("vector", rfc_vectors(), ids=lambda v: f"suite{v['cipher_suite']}")
def test_rfc9605_vector_seals_and_opens_bit_exactly(vector):
    ctx = sealroom.KeyContext(vector["cipher_suite"], vector["kid"], unhex(vector["base_key"]))
    metadata, pt, ct = unhex(vector["metadata"]), unhex(vector["pt"]), unhex(vector["ct"])
    assert ctx.seal(vector["ctr"], metadata, pt) == ct
    opened = ctx.open(metadata, ct)
    assert (opened.plaintext, opened.kid, opened.ctr) == (pt, vector["kid"], vector["ctr"])
    for at in range(len(ct)):
        tampered = bytearray(ct)
        tampered[at] ^= 0x01
        with pytest.raises((sealroom.OpenError.AuthenticationFailed, sealroom.OpenError.Malformed)):
            ctx.open(metadata, bytes(tampered))
    with pytest.raises(sealroom.OpenError.AuthenticationFailed):
        ctx.open(metadata + b"!", ct)


@pytest.mark.parametrize(
    "case", schedule_cases(), ids=lambda c: f"suite{c['cipher_suite']}-epoch{c['epoch']}"
)
def test_key_schedule_vector_opens_and_seals_bit_exactly(case):
    schedule = sealroom.KeySchedule(unhex(case["room_secret"]), case["cipher_suite"])
    ctx = schedule.key_context(case["epoch"], case["kid"])
    assert case["frames"], "every case has frames"
    for frame in case["frames"]:
        metadata, plaintext, sealed = unhex(frame["metadata"]), unhex(frame["plaintext"]), unhex(frame["sealed"])
        assert ctx.seal(frame["ctr"], metadata, plaintext) == sealed
        # A fresh opener per frame: the cases jump counters further than a replay window.
        opener = schedule.opener(case["epoch"])
        opened = opener.open(metadata, sealed)
        assert opened.plaintext == plaintext
        assert (opened.kid, opened.epoch, opened.ctr) == (case["kid"], case["epoch"], frame["ctr"])
        with pytest.raises(sealroom.OpenError.Replayed):
            opener.open(metadata, sealed)


def test_sealer_frames_open_only_with_the_same_secret_and_metadata():
    secret = bytes(range(32))
    sender = sealroom.KeySchedule(secret, sealroom.DEFAULT_SUITE).sealer(7)
    receiver = sealroom.KeySchedule(secret, sealroom.DEFAULT_SUITE).opener(7)
    stranger = sealroom.KeySchedule(bytes(32), sealroom.DEFAULT_SUITE).opener(7)
    frame = sender.seal(b"envelope", b"x" * 1200)
    with pytest.raises(sealroom.OpenError.AuthenticationFailed):
        stranger.open(b"envelope", frame)
    with pytest.raises(sealroom.OpenError.AuthenticationFailed):
        receiver.open(b"altered", frame)
    opened = receiver.open(b"envelope", frame)
    assert opened.plaintext == b"x" * 1200 and opened.kid == sender.kid() and opened.epoch == 7


def test_bad_key_material_raises_typed_errors():
    with pytest.raises(sealroom.KeyMaterialError.InvalidSecret) as err:
        sealroom.KeySchedule(bytes(31), sealroom.DEFAULT_SUITE)
    assert err.value.len == 31
    with pytest.raises(sealroom.KeyMaterialError.UnknownSuite):
        sealroom.KeySchedule(bytes(32), 9)
    with pytest.raises(sealroom.OpenError.Malformed):
        sealroom.KeySchedule(bytes(32), 4).opener(0).open(b"", b"\xff")
