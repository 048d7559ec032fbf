"""The push-and-sign workflow's rough edges (issue 13), checked without peers where none is needed."""

from __future__ import annotations

from trustkit.keys.passphrase import PassphraseRequest


def test_a_passphrase_prompt_names_the_key_with_12_characters_as_inspect_does():
    request = PassphraseRequest(role="targets/dev1", gun="example.com/team/app", keyid="ccb9903551e1" + "0" * 52,
                                creating=False)  # fmt: skip
    assert request.description == 'signer "targets/dev1" key ccb9903551e1 for example.com/team/app'
