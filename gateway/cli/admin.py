"""``tidings lint|keys|dlq``: content checks, API keys and the dead-letter list."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from gateway.cli.common import core_for
from gateway.cli.locate import redis_url_for
from gateway.errors import CliError
from gateway.models import CHANNELS, Status
from gateway.settings import Settings, queue_url


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    """The ``lint``, ``keys`` and ``dlq`` commands; returns those that find the data dir (they talk to Redis)."""
    lint = sub.add_parser("lint", help="check a text against the content rules (no Redis needed)")
    lint.add_argument("text", help="the message text, as it would be sent")
    lint.add_argument("--brand", help="the brand it is sent for (its policy overrides apply)")
    lint.add_argument(
        "--category", choices=["marketing", "transactional"], default="marketing", help="message category"
    )
    # A WeChat message is a template id and data values, not a text: not for this command.
    texts = [c for c in CHANNELS if c != "wechat"]
    lint.add_argument("--channel", choices=texts, default="sms", help="channel it would go on")
    lint.add_argument("--tenant", help="the tenant it is sent for (its policy overrides apply)")
    lint.set_defaults(func=cmd_lint)

    keys_p = sub.add_parser("keys", help="API keys")
    keys_sub = keys_p.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--tenant", required=True, help="the tenant the key acts for")
    create.add_argument(
        "--scopes", required=True, help="comma-separated: notify,optouts,templates,audit:read,admin"
    )
    create.add_argument("--name", help="a label to recognise the key by (default: none)")
    create.set_defaults(func=cmd_keys_create)
    revoke = keys_sub.add_parser(
        "revoke", help="revoke a key: it, and console sessions signed in with it, stop working"
    )
    revoke.add_argument("key_id", help="the key's id, as `keys create` printed it (key_ and 12 hex digits)")
    revoke.set_defaults(func=cmd_keys_revoke)

    dlq = sub.add_parser("dlq", help="the dead-letter list")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_sub.add_parser("list", help="notifications that exhausted their retries")
    dlq_list.add_argument("--tenant", help="this tenant only (default: every tenant)")
    dlq_list.set_defaults(func=cmd_dlq_list)
    replay = dlq_sub.add_parser("replay", help="queue dead letters again")
    replay.add_argument("--tenant", help="this tenant only (default: every tenant)")
    replay.add_argument("ids", nargs="*", help="ids to replay (default: all)")
    replay.set_defaults(func=cmd_dlq_replay)
    return [create, revoke, dlq_list, replay]


def cmd_lint(settings: Settings, args: argparse.Namespace) -> int:
    """Verdict, segments and the rendered text with offending terms marked; exit 1 when rejected."""
    from compliance.content import Draft, content_pipeline, run
    from compliance.policy import PolicyError, load_policy

    try:
        policy = load_policy(settings.policy_path)
    except PolicyError as exc:
        raise CliError(str(exc)) from None
    rules = policy.rules(args.tenant, args.brand)
    draft = Draft(
        channel=args.channel,
        category=args.category,
        brand=args.brand,
        fields={"text": args.text},
        rules=rules,
    )
    verdict = run(content_pipeline(policy.matcher), draft)
    terms = [t for r in ([verdict.reason] if verdict else []) + draft.warnings for t in r.get("terms", [])]
    marked = args.text
    for t in sorted(terms, key=lambda t: -int(t["start"])):
        marked = f"{marked[: t['start']]}[[{marked[t['start'] : t['end']]}]]{marked[t['end'] :]}"
    print(f"verdict:  {'reject' if verdict else 'allow'}")
    for r in ([verdict.reason] if verdict else []) + draft.warnings:
        print(f"reason:   {r['code']}{' (warning)' if r.get('severity') == 'warning' else ''}: {r['detail']}")
    if terms:
        print(f"terms:    {marked}")
    if verdict is None:
        print(f"rendered: {draft.fields['text']}")
        if draft.segments is not None:
            print(f"segments: {draft.segments} ({draft.encoding}, {len(draft.fields['text'])} characters)")
    return 1 if verdict else 0


# -- keys and dead letters -----------------------------------------------------------------------
def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    """Create a key; it is shown once and stored only as a hash."""
    from gateway.api.auth import check_scopes, check_tenant, new_key

    try:
        check_tenant(args.tenant)
        scopes = check_scopes([s.strip() for s in args.scopes.split(",") if s.strip()])
    except ValueError as exc:
        raise CliError(str(exc)) from None
    url = redis_url_for(settings, args.data_dir)
    key = new_key()

    async def run() -> str:
        from gateway.api.auth import store_key
        from gateway.state.redisdb import async_client

        client = async_client(url)
        try:
            return await store_key(client, key, args.tenant, scopes, name=args.name or "")
        finally:
            await client.aclose()

    key_id = asyncio.run(run())
    print(key)
    print(
        f"# {key_id}, tenant {args.tenant}, scopes {','.join(scopes)}. Shown once: store it now.",
        file=sys.stderr,
    )
    return 0


def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """Delete a key by its id; exit 1 when there is none."""
    url = redis_url_for(settings, args.data_dir)

    async def run() -> str | None:
        from gateway.api.auth import revoke_key
        from gateway.state.redisdb import async_client

        client = async_client(url)
        try:
            return await revoke_key(client, args.key_id)
        finally:
            await client.aclose()

    tenant = asyncio.run(run())
    if tenant is None:
        print(f"tidings: no API key {args.key_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id} (tenant {tenant}); API processes forget it within their key cache time")
    return 0


def cmd_dlq_list(settings: Settings, args: argparse.Namespace) -> int:
    """Print the dead letters: id, tenant, channel, masked address, attempts, last error."""
    from gateway.recipients import mask_address
    from gateway.timeutil import rfc3339

    url = redis_url_for(settings, args.data_dir)

    async def run() -> int:
        core = core_for(settings, url)
        store = core.store
        count = 0
        try:
            tenants = [args.tenant] if args.tenant else await store.tenants()
            for tenant in tenants:
                for ntf_id, at in await store.dead_letters(tenant):
                    found = await store.get(tenant, ntf_id)
                    if found is None:
                        print(f"{ntf_id}\t{tenant}\t-\t-\tattempts=-\terror=-\tat={rfc3339(at)}")
                    else:
                        r = found[0]
                        shown = mask_address(r.address, r.channel) if r.address else "-"
                        print(
                            f"{ntf_id}\t{tenant}\t{r.channel}\t{shown}\tattempts={r.attempts}"
                            f"\terror={r.error_code or '-'}\tat={rfc3339(at)}"
                        )
                    count += 1
        finally:
            await core.aclose()
        print(f"{count} dead letter(s)", file=sys.stderr)
        return 0

    return asyncio.run(run())


def cmd_dlq_replay(settings: Settings, args: argparse.Namespace) -> int:
    """Reset dead letters to queued with fresh attempts and enqueue them."""
    from gateway import events
    from gateway.delivery.batcher import Enqueuer
    from gateway.state.redisdb import sync_client
    from gateway.timeutil import system_clock

    url = redis_url_for(settings, args.data_dir)
    enqueuer = Enqueuer(sync_client(queue_url(settings, url)), settings.batch_size)

    async def run() -> dict[tuple[str, str], list[str]]:
        core = core_for(settings, url)
        store = core.store
        replayed: dict[tuple[str, str], list[str]] = {}
        try:
            tenants = [args.tenant] if args.tenant else await store.tenants()
            wanted = set(args.ids)
            for tenant in tenants:
                for ntf_id, _ in await store.dead_letters(tenant):
                    if wanted and ntf_id not in wanted:
                        continue
                    now = system_clock()
                    verdict = await store.replay(
                        tenant,
                        ntf_id,
                        events.encode(events.Replayed(at=events.at(now), source="dlq")),
                        now,
                        now + settings.lease_seconds,
                    )
                    if verdict == Status.QUEUED:
                        found = await store.get(tenant, ntf_id)
                        channel = found[0].channel if found else "sms"
                        replayed.setdefault((tenant, channel), []).append(ntf_id)
        finally:
            await core.aclose()
        return replayed

    replayed = asyncio.run(run())
    if replayed:
        from gateway.delivery.health import close_circuits

        # Replaying says the cause is fixed: give every provider a fresh circuit (a provider that
        # still fails opens again after a few sends).
        state = sync_client(url)
        try:
            close_circuits(state)
        finally:
            state.close()
    total = 0
    for (tenant, channel), ids in replayed.items():
        enqueuer.enqueue(tenant, channel, ids)
        total += len(ids)
    print(f"replayed {total} dead letter(s)")
    return 0
