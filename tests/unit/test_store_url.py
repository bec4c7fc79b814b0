"""deliver.store as a URL: what is accepted, what is refused (named), and the ssh store's
commands, quoted."""

from __future__ import annotations

import pytest

from pydeliver_tasks import store_url
from pydeliver_tasks.commands import store as store_commands
from pydeliver_tasks.config import ConfigError, load
from pydeliver_tasks.validation import InvalidInput


@pytest.mark.parametrize("text,expected", [
    (".deliver/releases", None),
    ("/srv/releases", None),
    ("ssh://deploy@10.0.0.5:2222/srv/releases",
     store_url.StoreUrl("ssh://deploy@10.0.0.5:2222/srv/releases", "ssh", "10.0.0.5", "deploy",
                        2222, "/srv/releases")),
    ("ssh://store.example.com/~/releases",
     store_url.StoreUrl("ssh://store.example.com/~/releases", "ssh", "store.example.com", None,
                        None, "/~/releases")),
    ("s3://team-releases/shop/rel", store_url.StoreUrl("s3://team-releases/shop/rel", "s3",
                                                        path="shop/rel/", bucket="team-releases")),
    ("s3://team-releases", store_url.StoreUrl("s3://team-releases", "s3", bucket="team-releases")),
])
def test_accepted(text: str, expected: store_url.StoreUrl | None) -> None:
    assert store_url.parse(text) == expected


@pytest.mark.parametrize("text,message", [
    ("ftp://host/releases", "unknown scheme 'ftp' in 'ftp://host/releases'"),
    ("https://bucket.s3.amazonaws.com/x", "unknown scheme 'https'"),
    ("ssh://user:secret@host/x", "no password in the store URL"),
    ("ssh://host", "needs a host and a directory"),
    ("ssh://host/", "needs a host and a directory"),
    ("ssh://host/a/../etc", "no '..'"),
    ("ssh://host/x;reboot", "invalid path '/x;reboot'"),
    ("ssh://bad_user!@host/x", "bad user name"),
    ("ssh://host:99999/x", "invalid URL"),
    ("s3://UPPER/x", "invalid bucket"),
    ("s3://b/x", "invalid bucket"),
    ("s3://bucket/x?versionId=1", "query or fragment"),
])
def test_refused_with_the_value_named(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("?", r"\?").replace("(", r"\(")):
        store_url.parse(text)


def test_config_keeps_a_local_copy_and_checks_the_endpoint(tmp_path) -> None:
    base = {"app": "shop", "builder": "mix", "project_dir": str(tmp_path)}
    s = load({"deliver": {**base, "store": "s3://team-releases/shop",
                          "store_endpoint": "http://127.0.0.1:9000"}})
    assert s.shared_store and s.shared_store.bucket == "team-releases"
    assert s.store == tmp_path / ".deliver" / "releases" and s.store_endpoint == "http://127.0.0.1:9000"
    assert load({"deliver": base}).shared_store is None
    with pytest.raises(ConfigError) as err:
        load({"deliver": {**base, "store": "ftp://x/y", "store_endpoint": "nope"}})
    assert err.value.problems == [
        "deliver.store: unknown scheme 'ftp' in 'ftp://x/y': use a directory, "
        "ssh://user@host[:port]/path or s3://bucket/prefix",
        "deliver.store_endpoint: expected http(s)://host[:port], got 'nope'",
        "deliver.store_endpoint: only for an s3:// deliver.store",
    ]


def test_ssh_store_commands_quote_and_take_home_relative_paths() -> None:
    assert store_commands.directory("/~/rel eases") == "rel eases"
    assert store_commands.listing("/~/rel eases") == \
        "if [ -d 'rel eases' ]; then cd 'rel eases' && ls -1A; fi"
    assert store_commands.read("/srv/r", "a_1.release.tar.gz.sha256") == \
        "cat /srv/r/a_1.release.tar.gz.sha256"
    assert store_commands.publish("/srv/r", ".a.part", "a_1+x.tar.gz") == \
        "cd /srv/r && mv -f .a.part a_1+x.tar.gz"
    assert store_commands.prepare("/~/x'y") == "mkdir -p 'x'\"'\"'y'"
