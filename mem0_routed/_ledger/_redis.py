"""Redis ledger: one budget and one local share for many hosts (optional extra ``[redis]``).

Layout (all keys share the hash tag ``{prefix}`` so the Lua scripts also work on Redis Cluster):

- ``{p}seq``     INCR counter giving each record a unique, ordered id
- ``{p}records`` sorted set, score ts, member ``"<16-digit seq>|<record JSON>"``
- ``{p}calls``   sorted set of non-embedding record ids by ts (share denominator)
- ``{p}ext``     sorted set of non-embedding external record ids by ts (share numerator)
- ``{p}cost``    sorted set of ``"<seq>|<cost>"`` for records that cost money, by ts (budget)
- ``{p}totals``  hash of running counters (calls, local, external, cost) for quick all-time reads
- ``{p}resv``    hash id -> ``"amount|created|expires"``: open reservations, purged when expired
- ``{p}epoch``   random id written once (when absent) by a ledger's first reservation

The server clock (``TIME``) dates reservations so hosts with skewed clocks agree on expiry.

Why the epoch: a Redis restarted empty or flushed (FLUSHDB) would otherwise reset the month's spend
to $0 and the budget would stop being a cap. Each ``RedisLedger`` remembers the epoch it first saw;
while a budget is set, a reservation (checked in the same Lua step) is refused with reason
``"budget"`` once the epoch key has vanished or changed, and an ERROR is logged once. Local calls
and usage records are never blocked by it. The operator acknowledges the reset (the lost spend is
accounted for, or accepted) with ``RedisLedger.acknowledge_reset()`` or by restarting the process.
A process that starts against an already-flushed Redis cannot know what was lost: it creates a new
epoch, counts the budget from what Redis holds, and logs a WARNING that a new ledger starts there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from .._errors import MissingExtra
from .._records import Refusal, Reservation, ShareCounts, UsageRecord, counts_in_share, validate_record
from .._urls import mask_url
from ._base import RESERVATION_TTL_S, Backlog, check_reservation, new_reservation_id, validate_amount

if TYPE_CHECKING:
    import redis

__all__ = ["RedisLedger"]

log = logging.getLogger("mem0_routed")

# KEYS[5]: epoch, KEYS[6]: seq   ARGV[8]: the epoch this ledger remembers|'' (none yet), ARGV[9]: a new id.
# created: '1' new epoch on an empty prefix, '2' on records kept by a version without epochs.
# Returns early with {'reset', current epoch|''} when a budget is set and the remembered epoch is gone.
_EPOCH = """
local epoch, created = redis.call('GET', KEYS[5]), '0'
if ARGV[8] == '' then
  if not epoch then
    epoch, created = ARGV[9], (redis.call('EXISTS', KEYS[6]) == 1 and '2' or '1')
    redis.call('SET', KEYS[5], epoch)
  end
elseif epoch ~= ARGV[8] then
  if ARGV[2] ~= '' then return {'reset', epoch or ''} end
  epoch = ARGV[8]
end
"""

_PURGE = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) + tonumber(now_t[2]) / 1000000
local open_n, open_amt = 0, 0
local r = redis.call('HGETALL', KEYS[1])
for i = 1, #r, 2 do
  local amt, exp = string.match(r[i + 1], '^([^|]+)|[^|]+|([^|]+)$')
  if tonumber(exp) <= now then redis.call('HDEL', KEYS[1], r[i])
  else open_n = open_n + 1; open_amt = open_amt + tonumber(amt) end
end
"""

# KEYS: resv, cost, calls, ext, epoch, seq
# ARGV: amount, budget|'', budget_since, share|'', share_since, ttl, id, epoch|'', new epoch
# Every answer ends with the epoch and whether this call created it.
_RESERVE = (
    _EPOCH
    + _PURGE
    + """
local spent, total, ext = 0, 0, 0
if ARGV[2] ~= '' then
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[3], '+inf')) do
    spent = spent + tonumber(string.match(m, '|(.+)$'))
  end
end
if ARGV[4] ~= '' then
  total = redis.call('ZCOUNT', KEYS[3], ARGV[5], '+inf')
  ext = redis.call('ZCOUNT', KEYS[4], ARGV[5], '+inf')
end
local amount = tonumber(ARGV[1])
if ARGV[2] ~= '' and spent + open_amt + amount > tonumber(ARGV[2]) + 1e-9 then
  return {'budget', tostring(spent), tostring(open_amt), tostring(open_n), total, ext, epoch, created}
end
if ARGV[4] ~= '' and (ext + open_n + 1) / (total + open_n + 1) > tonumber(ARGV[4]) + 1e-12 then
  return {'share', tostring(spent), tostring(open_amt), tostring(open_n), total, ext, epoch, created}
end
redis.call('HSET', KEYS[1], ARGV[7], ARGV[1] .. '|' .. string.format('%.6f', now) .. '|' ..
  string.format('%.6f', now + tonumber(ARGV[6])))
return {'ok', string.format('%.6f', now), epoch, created}
"""
)

# KEYS: seq, records, calls, ext, cost, totals, resv, rec:<write id>
# ARGV: ts, json, counted(0/1), is_local(0/1), cost, reservation id|''
# The write id makes a retried write count once: a write whose reply was lost (timeout) may have run.
_RECORD = """
if not redis.call('SET', KEYS[8], '1', 'NX', 'EX', 86400) then return false end
local seq = string.format('%016d', redis.call('INCR', KEYS[1]))
redis.call('ZADD', KEYS[2], ARGV[1], seq .. '|' .. ARGV[2])
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[3], ARGV[1], seq)
  redis.call('HINCRBY', KEYS[6], 'calls', 1)
  if ARGV[4] == '0' then
    redis.call('ZADD', KEYS[4], ARGV[1], seq)
    redis.call('HINCRBY', KEYS[6], 'external', 1)
  else
    redis.call('HINCRBY', KEYS[6], 'local', 1)
  end
end
if tonumber(ARGV[5]) ~= 0 then
  redis.call('ZADD', KEYS[5], ARGV[1], seq .. '|' .. ARGV[5])
  redis.call('HINCRBYFLOAT', KEYS[6], 'cost', ARGV[5])
end
if ARGV[6] ~= '' then redis.call('HDEL', KEYS[7], ARGV[6]) end
return seq
"""

# KEYS: resv, calls, ext   ARGV: since
_COUNTS = (
    _PURGE
    + """
return {redis.call('ZCOUNT', KEYS[2], ARGV[1], '+inf'), redis.call('ZCOUNT', KEYS[3], ARGV[1], '+inf'), open_n}
"""
)


def _import_redis() -> Any:
    try:
        import redis
    except ImportError as exc:
        raise MissingExtra(
            "the Redis ledger needs the redis package: pip install 'mem0-routed[redis]'"
        ) from exc
    return redis


class RedisLedger:
    """Usage records and reservations in Redis, shared by every host pointing at the same prefix."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "mem0routed:",
        reservation_ttl_s: float = RESERVATION_TTL_S,
        client: redis.Redis | None = None,
        socket_timeout_s: float = 2.0,
    ) -> None:
        self.url = mask_url(url)  # shown in logs and reprs; the real URL stays in the client
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix {prefix!r} must not contain braces; they are added as a hash tag")
        self.prefix = prefix
        self._ttl = reservation_ttl_s
        self._backlog = Backlog(self.url, self.flush)
        self._ids_lock = threading.Lock()
        self._write_ids: dict[int, str] = {}  # id(record) -> its write id, while it waits to be written
        if client is None:
            redis = _import_redis()
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry

            # One quick retry: redis-py's default (3, backing off up to 10 s, each waiting the socket
            # timeout) held every routed call for a minute when Redis froze. Each ledger step is now
            # bounded by 2 x socket_timeout_s + 0.2 s; the router then carries on without the ledger.
            client = redis.Redis.from_url(
                url, decode_responses=True, socket_timeout=socket_timeout_s,
                socket_connect_timeout=socket_timeout_s, retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
            )  # fmt: skip
        self._r = client
        names = ("seq", "records", "calls", "ext", "cost", "totals", "resv", "epoch")
        k = {n: f"{{{prefix}}}{n}" for n in names}
        self._k = k
        self._epoch: str | None = None  # the epoch first seen; None until the first reservation
        self._reset_logged = False
        self._reserve = client.register_script(_RESERVE)
        self._record = client.register_script(_RECORD)
        self._counts = client.register_script(_COUNTS)

    def __repr__(self) -> str:
        return f"RedisLedger({self.url!r}, prefix={self.prefix!r})"

    def record(self, record: UsageRecord, *, reservation: Reservation | None = None) -> None:
        """Append ``record`` (after any held ones). If Redis fails, the unwritten records are held in
        memory for the next write and the error is raised: never dropped silently."""
        validate_record(record)
        pending = [*self._backlog.take(), record]
        for i, r in enumerate(pending):
            try:
                with self._ids_lock:  # one id per record for all its attempts
                    wid = self._write_ids.setdefault(id(r), new_reservation_id())
                self._write(r, reservation if r is record else None, wid)
            except Exception:
                self._backlog.hold(pending[i:])
                raise
            with self._ids_lock:
                self._write_ids.pop(id(r), None)
        self._backlog.written(len(pending) - 1)

    def flush(self) -> None:
        """Write the records held after failed writes (at exit, or whenever the caller likes)."""
        pending = self._backlog.take()
        for i, r in enumerate(pending):
            try:
                with self._ids_lock:
                    wid = self._write_ids.setdefault(id(r), new_reservation_id())
                self._write(r, None, wid)
            except Exception:
                self._backlog.hold(pending[i:])
                raise
            with self._ids_lock:
                self._write_ids.pop(id(r), None)
        self._backlog.written(len(pending))

    @property
    def unwritten(self) -> int:
        """Records whose write failed and that wait for the next write."""
        return len(self._backlog)

    def _write(self, record: UsageRecord, reservation: Reservation | None, write_id: str) -> None:
        k = self._k
        self._record(
            keys=[k["seq"], k["records"], k["calls"], k["ext"], k["cost"], k["totals"], k["resv"],
                  f"{{{self.prefix}}}rec:{write_id}"],
            args=[
                repr(float(record.ts)), json.dumps(record.to_dict(), separators=(",", ":")),
                "1" if counts_in_share(record) else "0", "1" if record.is_local else "0",
                repr(float(record.cost_usd)), reservation.id if reservation is not None else "",
            ],
        )  # fmt: skip

    def reserve_external(
        self,
        amount_usd: float,
        *,
        budget_usd: float | None,
        budget_since: float,
        max_external_share: float | None,
        share_since: float,
    ) -> Reservation | Refusal:
        validate_amount(amount_usd)
        k = self._k
        rid = new_reservation_id()
        remembered = self._epoch
        out = self._reserve(
            keys=[k["resv"], k["cost"], k["calls"], k["ext"], k["epoch"], k["seq"]],
            args=[
                repr(float(amount_usd)), "" if budget_usd is None else repr(float(budget_usd)),
                repr(float(budget_since)), "" if max_external_share is None else repr(float(max_external_share)),
                repr(float(share_since)), repr(float(self._ttl)), rid, remembered or "", new_reservation_id(),
            ],
        )  # fmt: skip
        if out[0] == "reset":
            return self._reset_refusal(out[1])
        if remembered is None:
            self._adopt(out[-2], created=out[-1])
        if out[0] == "ok":
            return Reservation(rid, float(amount_usd))
        # Refused: let the shared rule word the message from the numbers the script saw.
        _, spent, open_amt, open_n, total, ext = out[:6]
        refusal = check_reservation(
            amount_usd, spent_usd=float(spent), open_amount=float(open_amt), open_count=int(open_n),
            budget_usd=budget_usd if out[0] == "budget" else None, budget_since=budget_since,
            total=int(total), external=int(ext),
            max_external_share=max_external_share if out[0] == "share" else None, share_since=share_since,
        )  # fmt: skip
        return refusal or Refusal(out[0], f"external call refused ({out[0]})")

    def _adopt(self, epoch: str, *, created: str) -> None:
        with self._ids_lock:
            if self._epoch is None:
                self._epoch = epoch
        if created == "2":  # records without an epoch: written before epochs existed (an upgrade)
            log.info("mem0-routed: Redis ledger %s (prefix %r): epoch key added", self.url, self.prefix)
        elif created == "1":
            log.warning(
                "mem0-routed: Redis ledger %s (prefix %r) had no epoch key: a new ledger starts here and "
                "the budget counts from what Redis holds. If this Redis held a ledger before (FLUSHDB, a "
                "restart without persistence), the spend recorded there is lost and not counted",
                self.url,
                self.prefix,
            )

    def _reset_refusal(self, current: str) -> Refusal:
        what = "was replaced by another epoch" if current else "has vanished"
        message = (
            f"Redis ledger {self.url} (prefix {self.prefix!r}) was reset: its epoch key {self._k['epoch']} "
            f"{what} (FLUSHDB, a restart without persistence, or clear()), so this month's spend before the "
            "reset is unknown and external calls are refused (local calls go on). Once the lost spend is "
            "accounted for, acknowledge with router.ledger.acknowledge_reset() in each process, or "
            "restart them"
        )
        with self._ids_lock:
            first, self._reset_logged = not self._reset_logged, True
        if first:
            log.error("mem0-routed: %s", message)
        return Refusal("budget", message)

    def acknowledge_reset(self) -> None:
        """Accept that this ledger was reset: the next reservation adopts the epoch Redis holds
        (creating one if none), and the budget counts from what Redis holds from then on.

        Only for this ``RedisLedger`` (this process); every other process sharing the prefix
        acknowledges too, or is restarted. The spend lost in the reset is NOT counted: lower
        ``monthly_budget_usd`` by it for the rest of the month if the cap must hold.
        """
        with self._ids_lock:
            was, self._epoch, self._reset_logged = self._epoch, None, False
        log.warning(
            "mem0-routed: Redis ledger %s (prefix %r): reset acknowledged%s",
            self.url,
            self.prefix,
            "" if was is None else "; the budget counts from what Redis holds now",
        )

    def release(self, reservation: Reservation) -> None:
        self._r.hdel(self._k["resv"], reservation.id)

    def counts(self, since: float | None = None) -> ShareCounts:
        k = self._k
        total, ext, n_open = self._counts(
            keys=[k["resv"], k["calls"], k["ext"]], args=["-inf" if since is None else repr(float(since))]
        )
        total, ext, n_open = int(total), int(ext), int(n_open)
        return ShareCounts(total + n_open, total - ext, ext + n_open)

    def spent_usd(self, since: float | None = None) -> float:
        """Settled costs only; open reservations are not money spent yet."""
        if since is None:
            return float(self._r.hget(self._k["totals"], "cost") or 0.0)
        members: list[str] = self._r.zrangebyscore(self._k["cost"], repr(float(since)), "+inf")  # type: ignore[assignment]
        return sum((float(m.partition("|")[2]) for m in members), 0.0)

    def records(self, since: float | None = None, limit: int | None = None) -> list[UsageRecord]:
        lo = "-inf" if since is None else repr(float(since))
        members: list[str]
        if limit is None:
            members = self._r.zrangebyscore(self._k["records"], lo, "+inf")  # type: ignore[assignment]
        elif limit <= 0:
            return []
        else:
            newest = self._r.zrevrangebyscore(self._k["records"], "+inf", lo, start=0, num=int(limit))
            members = list(newest)[::-1]
        return [UsageRecord(**json.loads(m.partition("|")[2])) for m in members]

    def clear(self) -> None:
        """Delete every key under this prefix (tests, or a deliberate reset). This ledger starts a
        new epoch at its next reservation; other ledgers on the prefix refuse external calls until
        they acknowledge the reset (``acknowledge_reset``)."""
        self._r.delete(*self._k.values())
        with self._ids_lock:
            self._epoch, self._reset_logged = None, False

    def close(self) -> None:
        """Write what the backlog holds (if Redis answers), then close; what stays unwritten is logged."""
        with contextlib.suppress(Exception):  # Redis down: report_at_close says what is lost
            self.flush()
        self._backlog.report_at_close()
        self._r.close()
