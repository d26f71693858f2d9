"""The public names (tfrs_lab.export.signatures): item names, and the pre-rename names recognised."""

from __future__ import annotations

import pytest

from tfrs_lab.export import signatures as sig


def test_every_public_name_speaks_of_items_not_movies():
    public = [getattr(sig, n) for n in sig.__all__ if n.isupper() and isinstance(getattr(sig, n), str)
              and n not in ("LEGACY_TITLES_FILE", "RENAME_DOC")]
    assert public and not [n for n in public if "movie" in n]
    assert (sig.ITEM_ID, sig.ITEM_IDS, sig.ITEM_TITLES_FILE) == ("item_id", "item_ids", "item_titles.tsv")
    assert {sig.EXCLUDE_ITEM_IDS, sig.ALLOW_ITEM_IDS, sig.CANDIDATE_ITEM_IDS, sig.SEEN_ITEM_IDS} == {
        "exclude_item_ids", "allow_item_ids", "candidate_item_ids", "seen_item_ids"}


def test_every_old_name_maps_to_a_current_one():
    current = {getattr(sig, n) for n in sig.__all__ if n.isupper() and isinstance(getattr(sig, n), str)}
    assert set(sig.LEGACY_NAMES.values()) <= current
    assert all("movie" in old and "movie" not in new for old, new in sig.LEGACY_NAMES.items())
    assert sig.pre_rename_names(["user_id", "movie_ids", "scores", "exclude_movie_ids", "movie_ids"]) == {
        "exclude_movie_ids": "exclude_item_ids", "movie_ids": "item_ids"}
    assert sig.pre_rename_names(["user_id", "item_ids", "scores"]) == {}


def test_pre_rename_error_is_one_line_naming_each_rename_and_the_fix():
    text = sig.pre_rename_error("model 'm' version 3", {"movie_ids": "item_ids", "movie_id": "item_id"})
    assert "\n" not in text and text.startswith("model 'm' version 3 is an export from before the item names")
    assert "movie_ids -> item_ids, movie_id -> item_id" in text and "export it again" in text
    assert text.endswith(sig.RENAME_DOC)


@pytest.mark.parametrize("argv,old,new", [(["--movie-ids", "1,2"], "--movie-ids", "--item-ids"),
                                          (["--k", "3", "--movie-ids=1"], "--movie-ids", "--item-ids"),
                                          (["--movie-id", "50"], "--movie-id", "--item-id")])
def test_old_flags_are_named_with_their_replacement(argv, old, new):
    assert sig.legacy_flag_error(argv) == f"{old} was renamed {new} (same values): pass {new} - {sig.RENAME_DOC}"


def test_current_flags_pass():
    assert sig.legacy_flag_error(["--item-ids", "1,2", "--history", "3", "--exclude", "movie-ids"]) is None


def test_pre_rename_export_reads_a_directory_without_loading_it(tmp_path):
    assert sig.pre_rename_export(tmp_path) == {}  # no saved_model.pb, no titles
    (tmp_path / "assets.extra").mkdir()
    (tmp_path / "assets.extra" / sig.LEGACY_TITLES_FILE).write_text("1\tToy Story\n")
    assert sig.pre_rename_export(tmp_path) == {"movie_titles.tsv": "item_titles.tsv"}
