"""The pole's identity and counters: private, persistent, never reused."""

import stat

import pytest

from edge.state import KEY_FILE, PersistentCounter, create_identity, load_identity


def test_key_is_private_and_never_shown(tmp_path):
    ident = create_identity(tmp_path, "nl-ex-0001")
    mode = stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode)
    assert mode == 0o600
    assert ident.seed.hex() not in repr(ident)
    assert ident.seed.hex() not in str(ident.public_record())
    again = load_identity(tmp_path)
    assert again.public_key == ident.public_key and again.pole_id == "nl-ex-0001"


def test_existing_key_is_never_overwritten(tmp_path):
    create_identity(tmp_path, "nl-ex-0001")
    with pytest.raises(FileExistsError):
        create_identity(tmp_path, "nl-ex-0001")


def test_loose_permissions_refused(tmp_path):
    create_identity(tmp_path, "nl-ex-0001")
    (tmp_path / KEY_FILE).chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_identity(tmp_path)


def test_missing_identity_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="pole-admin identity create"):
        load_identity(tmp_path)


def test_counter_persists_before_use(tmp_path):
    c = PersistentCounter(tmp_path / "boot")
    assert c.advance() == 1 and c.advance() == 2
    assert PersistentCounter(tmp_path / "boot").advance() == 3
    (tmp_path / "boot").write_text("garbage")
    with pytest.raises(ValueError, match="reuse"):
        PersistentCounter(tmp_path / "boot")
