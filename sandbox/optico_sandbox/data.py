"""Deterministic, compact store of synthetic Optico calls.

Only the call start instants are materialised (sorted ``array('q')`` of UTC epoch
seconds plus the parallel call ids); every other field is derived on demand from
``(seed, call id)``, so millions of calls fit in a few tens of megabytes. Calls that
were inserted or updated live in a small override dict. Per-day aggregates are
kept up to date so that ``group_by_day`` never has to scan the calls.

Real data is messy, and so is this: by default ~3% of callers are hidden (empty
``caller``) and ~1.3% of calls are a look-alike "twin" of the call just before them
(same second, caller, tracking number and phone), as two hidden callers reaching one
number in the same second, or a dropped call redialled at once, are in real data.
"""

from __future__ import annotations

import random
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")

FILTER_NAMES = ("phone", "tracking_phone", "caller_phone", "offline_phone_description")

CALL_FIELDS = (
    "start_date",
    "caller",
    "tracking_number",
    "phone",
    "trigger_type",
    "source",
    "url",
    "referer",
    "keyword",
    "call_path",
    "status",
    "duration",
    "revenue",
    "keypad",
    "is_redirect",
    "expired_redirect",
    "client_data",
    "visit_id",
)
EXTRA_FIELDS = ("recording_url", "caller_city")

STATUSES = ("succès", "occupé", "aucune réponse")

# Destination numbers the tracking numbers forward to (Paris, Lyon, Bordeaux, Strasbourg).
PHONES = ("0145678900", "0472123456", "0556789012", "0388456789")

# (tracking number, index into PHONES, offline description or None, weight)
# Static (offline) numbers carry ~7% of the traffic.
TRACKING: tuple[tuple[str, int, str | None, int], ...] = (
    ("0974590001", 0, None, 30),
    ("0974590002", 0, None, 18),
    ("0974590003", 1, None, 14),
    ("0170360004", 1, None, 10),
    ("0170360005", 2, None, 9),
    ("0974590006", 2, None, 7),
    ("0974590007", 3, None, 5),
    ("0974590101", 0, "Flyer printemps", 3),
    ("0170360102", 1, "Annonce journal", 3),
    ("0974590103", 3, "Panneau 4x3", 1),
)
_TRACKING_INDEX = {t[0]: i for i, t in enumerate(TRACKING)}

_SITE = "https://www.plomberie-dupont.fr"
_PAGES = (
    "/",
    "/depannage",
    "/devis",
    "/contact",
    "/tarifs",
    "/chauffe-eau",
    "/debouchage-canalisation",
    "/fuite-eau",
    "/salle-de-bain",
    "/avis-clients",
)
# (source, referer domain, has keyword, weight)
_SOURCES = (
    ("traffic direct", "", False, 25),
    ("adwords", "www.google.fr", True, 25),
    ("Google", "www.google.fr", True, 35),
    ("Yahoo", "fr.search.yahoo.com", True, 5),
    ("Bing", "www.bing.com", True, 10),
)
_SOURCE_WEIGHTS = tuple(s[3] for s in _SOURCES)
_KEYWORDS = (
    "plombier paris",
    "plombier urgence",
    "fuite d'eau",
    "débouchage canalisation",
    "chauffe-eau en panne",
    "devis salle de bain",
    "plombier pas cher",
    "dépannage plomberie 24h/24",
)
_CITIES = ("Paris", "Lyon", "Marseille", "Bordeaux", "Lille", "Nantes", "Toulouse", "")
_CLIENT_DATA = ("", "", "", "agence=paris", "agence=lyon", "campagne=hiver", "ref-42")

# Relative call volume by local hour of day (office hours dominate, nights are rare).
_HOUR_WEIGHTS = (
    0.3, 0.15, 0.1, 0.1, 0.1, 0.2, 0.5, 1.5, 4, 7, 8, 8,
    5, 5, 7, 7, 7, 6, 4, 2.5, 1.5, 1, 0.7, 0.5,
)  # fmt: skip
# Relative volume by weekday (Monday first).
_WEEKDAY_WEIGHTS = (1.1, 1.0, 1.0, 1.0, 0.95, 0.5, 0.3)

_M64 = (1 << 64) - 1
_CALLER_SPACE = 300_000_000  # three prefixes x 10^8 subscriber numbers
_CALLER_MUL = 122_949_829  # prime, coprime with _CALLER_SPACE: the caller map is a bijection
_CALLER_PREFIXES = ("06", "07", "01")
_CALLER_ADD = 48_271_935
_REPEAT_GAP = 1009  # a repeat caller reuses the number of call ``id - _REPEAT_GAP``
_OUTCOMES = 4096
_PICKS = 1024
# Per-call hash bits: 0-11 outcome, 12-21 tracking number, 22+ repeat caller (mod 100);
# the top two 16-bit fields draw the hidden caller and the twin traits.
_HIDDEN_SHIFT = 32
_TWIN_SHIFT = 48
_TRAIT_SCALE = 1 << 16
_FMT = "%Y-%m-%d %H:%M:%S"


def parse_day(value: str) -> date | None:
    """Parse a strict ``YYYY-MM-DD`` calendar date, None when invalid.

    Args:
        value: The candidate date string.

    Returns:
        The date, or None when the text is not exactly a valid ``YYYY-MM-DD``.
    """
    if len(value) != 10 or value[4] != "-" or value[7] != "-":
        return None
    if not (value[:4] + value[5:7] + value[8:]).isdigit() or not value.isascii():
        return None
    try:
        return date(int(value[:4]), int(value[5:7]), int(value[8:]))
    except ValueError:
        return None


def _require_day(value: str | date) -> date:
    """Accept a date or its ISO text, for the Python-side API."""
    if isinstance(value, date):
        return value
    parsed = parse_day(value)
    if parsed is None:
        raise ValueError(f"invalid date {value!r}, expected YYYY-MM-DD")
    return parsed


def local_midnight(day: date) -> int:
    """UTC epoch seconds of 00:00 Paris time on ``day`` (midnight always exists there)."""
    return int(datetime(day.year, day.month, day.day, tzinfo=PARIS).timestamp())


def local_string(ts: int) -> str:
    """Paris wall-clock text of a UTC instant, the way Optico prints ``start_date``."""
    return datetime.fromtimestamp(ts, PARIS).strftime(_FMT)


def _rng(material: int | str) -> random.Random:
    """Seeded generator: synthetic data must be reproducible, not unpredictable."""
    return random.Random(material)  # noqa: S311 (no security use)


def _mix(x: int) -> int:
    """Cheap 64-bit avalanche hash so per-call traits look random but cost ~1 µs."""
    x = (x * 0x9E3779B97F4A7C15) & _M64
    x ^= x >> 29
    x = (x * 0xBF58476D1CE4E5B9) & _M64
    return x ^ (x >> 32)


def _weighted_table(weights: Iterable[int], size: int) -> list[int]:
    """Expand weights into a lookup table so a hash picks an index in O(1)."""
    ws = list(weights)
    total = sum(ws)
    table: list[int] = []
    for i, w in enumerate(ws):
        table.extend([i] * (size * w // total))
    while len(table) < size:
        table.append(0)
    return table


def _trait_threshold(share: float, name: str) -> int:
    """A share of calls as a bound on one 16-bit field of the per-call hash."""
    if not 0 <= share <= 1:
        raise ValueError(f"{name} must be between 0 and 1")
    return round(share * _TRAIT_SCALE)


def _caller_from_base(x: int) -> str:
    """Injective map call id -> French caller number (keys stay unique but for twins)."""
    body = (_CALLER_MUL * x + _CALLER_ADD) % _CALLER_SPACE
    return _CALLER_PREFIXES[body // 100_000_000] + f"{body % 100_000_000:08d}"


def _caller_base_of(number: str) -> int | None:
    """Invert :func:`_caller_from_base`, so caller filters need no scan."""
    if len(number) != 10 or not number.isdigit() or number[:2] not in _CALLER_PREFIXES:
        return None
    body = _CALLER_PREFIXES.index(number[:2]) * 100_000_000 + int(number[2:])
    inverse = pow(_CALLER_MUL, -1, _CALLER_SPACE)
    return ((body - _CALLER_ADD) * inverse) % _CALLER_SPACE


class CallStore:
    """All calls of one sandbox; not thread-safe (the server holds a lock around it)."""

    def __init__(
        self,
        calls: int,
        start_date: str | date,
        end_date: str | date,
        seed: int = 0,
        extra_fields: bool = False,
        *,
        lookalikes: float = 0.013,
        hidden_callers: float = 0.03,
    ) -> None:
        """Generate ``calls`` call instants spread over the local date range.

        About ``lookalikes`` of the calls are a twin of the call before them (id - 1)
        on the same local day, sharing its (start, caller, tracking number, phone), and
        about ``hidden_callers`` of them have an empty caller. With both at 0 that key is
        unique. Only the generated calls hold twins: calls added later never are.
        """
        if calls < 0:
            raise ValueError("calls must be >= 0")
        self.seed = seed
        self.extra_fields = extra_fields
        self.lookalikes = lookalikes
        self.hidden_callers = hidden_callers
        self._twin_below = _trait_threshold(lookalikes, "lookalikes")
        self._hidden_below = _trait_threshold(hidden_callers, "hidden_callers")
        self.start_day = _require_day(start_date)
        self.end_day = _require_day(end_date)
        if self.end_day < self.start_day:
            raise ValueError("end_date is before start_date")
        self._salt = _mix(seed * 0x2545F4914F6CDD1D + 0x1234567)
        self._mutations = 0
        self._overrides: dict[int, dict[str, Any]] = {}
        self._filter_cache: dict[tuple[Any, ...], list[int]] = {}
        self.version = 0

        orng = _rng(f"optico-outcomes-{seed}")
        self._outcomes = [self._random_outcome(orng) for _ in range(_OUTCOMES)]
        self._track_pick = _weighted_table((t[3] for t in TRACKING), _PICKS)

        self.ts = array("q")
        self._generate(calls, self.start_day, self.end_day, self.ts, _rng(f"t{seed}"))
        self._generated_calls = len(self.ts)  # ids below this may be twins
        self.ids = array("q", range(len(self.ts)))
        self.daily: dict[str, list[int]] = {}  # date -> [calls, duration, revenue cents]
        self._build_daily()
        self.ts_by_id = array("q", self.ts)

    # ------------------------------------------------------------------ generation
    @staticmethod
    def _random_outcome(rng: random.Random) -> tuple[int, int, int]:
        """One (status index, duration s, revenue cents) draw."""
        r = rng.random()
        if r < 0.72:
            duration = min(3600, max(5, int(rng.lognormvariate(4.4, 0.9))))
            cents = 0
            if duration >= 45 and rng.random() < 0.35:
                cents = rng.choice((1500, 2550, 4990, 8000, 12000, 19900)) + rng.randrange(100)
            return 0, duration, cents
        if r < 0.82:
            return 1, 0, 0
        return 2, 0, 0

    @staticmethod
    def _generate(n: int, first: date, last: date, out: array[int], rng: random.Random) -> None:
        """Append ``n`` sorted UTC instants spread over local days ``first..last``."""
        days = [first + timedelta(d) for d in range((last - first).days + 1)]
        weights = [_WEEKDAY_WEIGHTS[d.weekday()] * rng.uniform(0.75, 1.25) for d in days]
        total = sum(weights)
        exact = [n * w / total for w in weights]
        counts = [int(x) for x in exact]
        missing = n - sum(counts)
        by_fraction = sorted(range(len(days)), key=lambda i: (counts[i] - exact[i], i))
        for i in by_fraction[:missing]:
            counts[i] += 1
        for day, count in zip(days, counts, strict=True):
            if not count:
                continue
            begin = local_midnight(day)
            end = local_midnight(day + timedelta(1))
            # Real hours of this local day: 23 in spring, 25 in autumn (the repeated hour).
            slots = range((end - begin) // 3600)
            cum: list[float] = []
            acc = 0.0
            for s in slots:
                acc += _HOUR_WEIGHTS[datetime.fromtimestamp(begin + 3600 * s, PARIS).hour]
                cum.append(acc)
            picks = rng.choices(slots, cum_weights=cum, k=count)
            rnd = rng.random
            out.extend(sorted([begin + 3600 * s + int(rnd() * 3600) for s in picks]))

    def _build_daily(self) -> None:
        """Aggregate every call per local day once, at startup, and make the twins.

        One pass does both because both need every call's hash. A twin takes the
        instant of the call before it, which keeps ``ts`` sorted; the first call of a
        day has no twin to be, so twins never cross midnight.
        """
        outcomes = self._outcomes
        salt = self._salt
        twin_below = self._twin_below
        day = self.start_day
        lo = 0
        ts = self.ts
        while day <= self.end_day:
            nxt = day + timedelta(1)
            hi = bisect_left(ts, local_midnight(nxt), lo)
            if hi > lo:
                duration = 0
                cents = 0
                for i in self.ids[lo:hi]:
                    h = ((i ^ salt) * 0x9E3779B97F4A7C15) & _M64
                    h ^= h >> 29
                    h = (h * 0xBF58476D1CE4E5B9) & _M64
                    h ^= h >> 32
                    if h >> _TWIN_SHIFT < twin_below and i > lo:
                        ts[i] = ts[i - 1]  # at startup, ids are sorted positions
                    o = outcomes[h & 4095]
                    duration += o[1]
                    cents += o[2]
                self.daily[day.isoformat()] = [hi - lo, duration, cents]
            lo = hi
            day = nxt

    # ------------------------------------------------------------------ derivation
    def _hash(self, cid: int) -> int:
        return _mix(cid ^ self._salt)

    def _is_twin(self, cid: int) -> bool:
        """Whether a call is the look-alike twin of call ``cid - 1``.

        Exact from the hash and the instants: a call whose twin trait is drawn became
        a twin unless it was the first of its day (then its instant differs).
        """
        return (
            0 < cid < self._generated_calls
            and self._hash(cid) >> _TWIN_SHIFT < self._twin_below
            and self.ts_by_id[cid] == self.ts_by_id[cid - 1]
        )

    def _root(self, cid: int) -> int:
        """The first call of a twin group: it draws the fields its twins share."""
        while self._is_twin(cid):
            cid -= 1
        return cid

    def _tracking_index(self, cid: int) -> int:
        """Tracking number index of a generated (not overridden) call."""
        return self._track_pick[(self._hash(self._root(cid)) >> 12) & (_PICKS - 1)]

    def _caller(self, cid: int) -> str:
        """Caller of a generated call: hidden (empty), a repeat of an earlier one (~12%)."""
        cid = self._root(cid)
        h = self._hash(cid)
        if (h >> _HIDDEN_SHIFT) & (_TRAIT_SCALE - 1) < self._hidden_below:
            return ""
        if cid >= _REPEAT_GAP and (h >> 22) % 100 < 12:
            other = cid - _REPEAT_GAP
            if local_string(self.ts_by_id[cid]) != local_string(self.ts_by_id[other]):
                return _caller_from_base(other)
        return _caller_from_base(cid)

    def _generated(self, cid: int) -> dict[str, Any]:
        """Full record of a generated call, from (seed, id) only."""
        h = self._hash(cid)
        status, duration, cents = self._outcomes[h & 4095]
        track, phone_idx, offline, _ = TRACKING[self._tracking_index(cid)]
        rng = _rng(self.seed * 1_000_003 + cid)
        rec: dict[str, Any] = {
            "start_date": local_string(self.ts_by_id[cid]),
            "caller": self._caller(cid),
            "tracking_number": track,
            "phone": PHONES[phone_idx],
        }
        if offline is not None:
            rec.update(
                trigger_type="1",
                source="",
                url="",
                referer="",
                keyword="",
                call_path="",
            )
        else:
            trigger = rng.choices(("1", "2", "3", "4"), (80, 10, 6, 4))[0]
            source, referer, has_kw, _w = rng.choices(_SOURCES, _SOURCE_WEIGHTS)[0]
            pages = [_SITE + rng.choice(_PAGES) for _ in range(rng.randint(1, 5))]
            rec.update(
                trigger_type=trigger,
                source=source,
                url=pages[-1],
                referer=referer,
                keyword=rng.choice(_KEYWORDS) if has_kw else "",
                call_path="\n".join(pages),
            )
        rec.update(
            status=STATUSES[status],
            duration=duration,
            revenue=cents / 100,
            keypad=rng.choice(("", "", "", "", "1", "2", "12", "0", "31")),
            is_redirect=rng.random() < 0.04,
            expired_redirect=rng.random() < 0.02,
            client_data=rng.choice(_CLIENT_DATA),
            visit_id="" if offline is not None else f"{rng.getrandbits(96):024x}",
        )
        if self.extra_fields:
            rec["recording_url"] = (
                f"https://rec.optico.fr/{cid:08d}.mp3" if status == 0 and duration else ""
            )
            rec["caller_city"] = rng.choice(_CITIES)
        return rec

    def record(self, cid: int) -> dict[str, Any]:
        """Current snake_case, native-typed record of one call."""
        rec = self._generated(cid)
        override = self._overrides.get(cid)
        if override:
            rec.update(override)
        return rec

    def _outcome(self, cid: int) -> tuple[int, int]:
        """(duration, revenue cents) of a call, honouring overrides."""
        override = self._overrides.get(cid)
        if override and "duration" in override:
            return int(override["duration"]), round(float(override["revenue"]) * 100)
        _status, duration, cents = self._outcomes[self._hash(cid) & 4095]
        return duration, cents

    # ------------------------------------------------------------------ queries
    @property
    def count(self) -> int:
        """Number of calls currently held."""
        return len(self.ts)

    def bounds(self, first: date | None, last: date | None) -> tuple[int, int]:
        """Sorted positions [lo, hi) of the calls on local days first..last inclusive."""
        lo = 0 if first is None else bisect_left(self.ts, local_midnight(first))
        hi = (
            len(self.ts)
            if last is None
            else bisect_left(self.ts, local_midnight(last + timedelta(1)))
        )
        return lo, max(lo, hi)

    def matching(
        self, first: date | None, last: date | None, filters: dict[str, str]
    ) -> list[int] | range:
        """Ascending sorted positions of the calls in the range that pass every filter."""
        lo, hi = self.bounds(first, last)
        active = {k: v for k, v in filters.items() if v is not None}
        if not active:
            return range(lo, hi)
        key = (lo, hi, self.version, tuple(sorted(active.items())))
        cached = self._filter_cache.get(key)
        if cached is not None:
            return cached
        result = self._scan(lo, hi, active)
        if len(self._filter_cache) >= 16:
            self._filter_cache.clear()
        self._filter_cache[key] = result
        return result

    def _scan(self, lo: int, hi: int, active: dict[str, str]) -> list[int]:
        """Positions in [lo, hi) passing the filters (tracking filters via index sets)."""
        allowed = set(range(len(TRACKING)))
        for i, (track, phone_idx, offline, _w) in enumerate(TRACKING):
            if "tracking_phone" in active and track != active["tracking_phone"]:
                allowed.discard(i)
            if "phone" in active and PHONES[phone_idx] != active["phone"]:
                allowed.discard(i)
            if "offline_phone_description" in active and (
                offline is None or offline != active["offline_phone_description"]
            ):
                allowed.discard(i)
        caller = active.get("caller_phone")
        if caller is not None:
            return self._scan_caller(lo, hi, caller, active)
        out: list[int] = []
        ids = self.ids
        overrides = self._overrides
        pick = self._track_pick
        salt = self._salt
        twin_below = self._twin_below
        for pos in range(lo, hi):
            cid = ids[pos]
            if cid in overrides and "tracking_number" in overrides[cid]:
                if self._passes(self.record(cid), active):
                    out.append(pos)
                continue
            h = ((cid ^ salt) * 0x9E3779B97F4A7C15) & _M64
            h ^= h >> 29
            h = (h * 0xBF58476D1CE4E5B9) & _M64
            h ^= h >> 32
            if h >> _TWIN_SHIFT < twin_below:  # maybe a twin: its tracking number is its root's
                index = self._tracking_index(cid)
            else:
                index = pick[(h >> 12) & (_PICKS - 1)]
            if index in allowed:
                out.append(pos)
        return out

    def _scan_caller(self, lo: int, hi: int, caller: str, active: dict[str, str]) -> list[int]:
        """Find a caller's calls by inverting the caller map instead of scanning.

        A number belongs to call ``base``, to its repeat ``base + _REPEAT_GAP`` and to
        their twins (the calls right after them); hidden callers match no number.
        """
        candidates: set[int] = {c for c, o in self._overrides.items() if o.get("caller") == caller}
        base = _caller_base_of(caller)
        if base is not None:
            for root in (base, base + _REPEAT_GAP):
                cid = root
                while cid < len(self.ts_by_id) and (cid == root or self._is_twin(cid)):
                    candidates.add(cid)
                    cid += 1
        out: list[int] = []
        for cid in candidates:
            rec = self.record(cid)
            if not self._passes(rec, active):
                continue
            pos = self._position(cid)
            if lo <= pos < hi:
                out.append(pos)
        out.sort()
        return out

    def _position(self, cid: int) -> int:
        """Sorted position of a call id (ties on the instant are ordered by id)."""
        t = self.ts_by_id[cid]
        pos = bisect_left(self.ts, t)
        while self.ids[pos] != cid:
            pos += 1
        return pos

    @staticmethod
    def _passes(rec: dict[str, Any], active: dict[str, str]) -> bool:
        """Apply the four documented filters to a full record."""
        if "phone" in active and rec["phone"] != active["phone"]:
            return False
        if "tracking_phone" in active and rec["tracking_number"] != active["tracking_phone"]:
            return False
        if "caller_phone" in active and rec["caller"] != active["caller_phone"]:
            return False
        if "offline_phone_description" in active:
            idx = _TRACKING_INDEX.get(rec["tracking_number"])
            desc = None if idx is None else TRACKING[idx][2]
            if desc is None or desc != active["offline_phone_description"]:
                return False
        return True

    def newest_first(
        self,
        positions: list[int] | range,
        start: int,
        stop: int,
        shuffle: int | None = None,
    ) -> list[int]:
        """Items ``start:stop`` of ascending ``positions`` taken newest first.

        Ties on the instant keep ascending id order reversed, unless ``shuffle`` is
        given: then each tie group is ordered by a hash of (call id, ``shuffle``), as a
        database may order ``ORDER BY start_date DESC LIMIT/OFFSET`` differently for each
        offset. Only the tie groups cut by the slice's ends need sorting.
        """
        total = len(positions)
        lo, hi = max(0, total - stop), max(0, total - start)
        if shuffle is None or lo >= hi:
            return list(positions[lo:hi][::-1])
        ts = self.ts
        first, last = lo, hi
        while first > 0 and ts[positions[first - 1]] == ts[positions[lo]]:
            first -= 1
        while last < total and ts[positions[last]] == ts[positions[hi - 1]]:
            last += 1
        salt = _mix(shuffle ^ self._salt)
        ranked = sorted(
            positions[first:last], key=lambda pos: (-ts[pos], _mix(self.ids[pos] ^ salt))
        )
        return ranked[last - hi : last - lo]

    def records_at(self, positions: Iterable[int]) -> Iterator[dict[str, Any]]:
        """Records for sorted positions, in the order given."""
        ids = self.ids
        for pos in positions:
            yield self.record(ids[pos])

    def daily_rows(
        self, first: date | None, last: date | None, filters: dict[str, str]
    ) -> list[tuple[str, int, int, int]]:
        """Ascending (date, calls, duration, revenue cents) for days that have calls."""
        active = {k: v for k, v in filters.items() if v is not None}
        if not active:
            lo = "" if first is None else first.isoformat()
            hi = "9999-12-31" if last is None else last.isoformat()
            return sorted(
                (d, v[0], v[1], v[2]) for d, v in self.daily.items() if lo <= d <= hi and v[0]
            )
        acc: dict[str, list[int]] = {}
        for pos in self.matching(first, last, active):
            cid = self.ids[pos]
            day = local_string(self.ts[pos])[:10]
            duration, cents = self._outcome(cid)
            row = acc.setdefault(day, [0, 0, 0])
            row[0] += 1
            row[1] += duration
            row[2] += cents
        return sorted((d, v[0], v[1], v[2]) for d, v in acc.items())

    # ------------------------------------------------------------------ mutations
    def _key(self, rec: dict[str, Any]) -> tuple[str, str, str, str]:
        return (rec["start_date"], rec["caller"], rec["tracking_number"], rec["phone"])

    def _collides(self, ts: int, key: tuple[str, str, str, str], skip: int = -1) -> bool:
        """True when another call has the same (local start, caller, tracking, phone)."""
        for t in (ts - 3600, ts, ts + 3600):  # the autumn fold repeats local strings 1 h apart
            if local_string(t) != key[0]:
                continue
            for pos in range(bisect_left(self.ts, t), bisect_right(self.ts, t)):
                cid = self.ids[pos]
                if cid != skip and self._key(self.record(cid)) == key:
                    return True
        return False

    def _insert_sorted(self, new: list[tuple[int, int]]) -> None:
        """Merge new (instant, id) pairs, ids larger than all existing ones, into the arrays."""
        new.sort()
        if len(new) <= 32:
            for t, cid in new:
                pos = bisect_right(self.ts, t)
                self.ts.insert(pos, t)
                self.ids.insert(pos, cid)
            return
        ts = array("q")
        ids = array("q")
        last = 0
        for t, cid in new:
            pos = bisect_right(self.ts, t, last)
            ts.extend(self.ts[last:pos])
            ids.extend(self.ids[last:pos])
            ts.append(t)
            ids.append(cid)
            last = pos
        ts.extend(self.ts[last:])
        ids.extend(self.ids[last:])
        self.ts = ts
        self.ids = ids

    def _add_to_daily(self, ts: int, duration: int, cents: int, sign: int = 1) -> None:
        day = local_string(ts)[:10]
        row = self.daily.setdefault(day, [0, 0, 0])
        row[0] += sign
        row[1] += sign * duration
        row[2] += sign * cents

    def _touch(self) -> None:
        self.version += 1
        self._filter_cache.clear()

    def add_calls(self, n: int, first: str | date, last: str | date) -> list[dict[str, Any]]:
        """Add ``n`` generated calls on local days first..last (past days = late arrivals)."""
        self._mutations += 1
        rng = _rng(f"optico-add-{self.seed}-{self._mutations}")
        instants = array("q")
        self._generate(n, _require_day(first), _require_day(last), instants, rng)
        return self._add_at(instants)

    def add_newest(self, n: int, day: str | date) -> list[dict[str, Any]]:
        """Add ``n`` calls on local ``day`` after every call it holds, so served first.

        An empty day gets them from noon. A day already full up to 23:59:59 gets them in
        its last second: among equal instants the newest id is served first, so they
        still come first.
        """
        local = _require_day(day)
        begin = local_midnight(local)
        end = local_midnight(local + timedelta(1))
        lo, hi = bisect_left(self.ts, begin), bisect_left(self.ts, end)
        latest = self.ts[hi - 1] if hi > lo else begin + 12 * 3600
        return self._add_at([min(latest + 1 + k, end - 1) for k in range(n)])

    def _add_at(self, instants: Iterable[int]) -> list[dict[str, Any]]:
        """Add generated calls at ascending instants, nudged until their key is free."""
        new: list[tuple[int, int]] = []
        new_keys: set[tuple[str, str, str, str]] = set()
        for t in instants:
            cid = len(self.ts_by_id)
            self.ts_by_id.append(t)
            key = self._key(self._generated(cid))
            # Uniqueness guard: nudge the instant until the key is free (almost never loops).
            while key in new_keys or self._collides(t, key):
                t += 1
                self.ts_by_id[cid] = t
                key = self._key(self._generated(cid))
            new_keys.add(key)
            new.append((t, cid))
        self._insert_sorted(new)
        for t, cid in new:
            self._add_to_daily(t, *self._outcome(cid))
        self._touch()
        return [self.record(cid) for _t, cid in sorted(new)]

    def insert_call(
        self, start_date: str, fold: int = 0, *, allow_lookalike: bool = False, **fields: Any
    ) -> dict[str, Any]:
        """Place one call at a Paris wall-clock time, with any fields forced.

        A call sharing (start, caller, tracking, phone) with another is refused unless
        ``allow_lookalike``: real data holds such look-alikes, tests build them.
        """
        unknown = set(fields) - set(CALL_FIELDS) - set(EXTRA_FIELDS)
        if unknown or "start_date" in fields:
            raise TypeError(
                f"unknown call fields: {sorted(unknown | ({'start_date'} & set(fields)))}"
            )
        naive = datetime.strptime(start_date, _FMT)
        aware = naive.replace(tzinfo=PARIS, fold=fold)
        t = int(aware.timestamp())
        if local_string(t) != start_date:
            raise ValueError(f"{start_date} does not exist in Europe/Paris (DST gap)")
        cid = len(self.ts_by_id)
        self.ts_by_id.append(t)
        rec = self._generated(cid)
        track = fields.get("tracking_number")
        if track is not None and "phone" not in fields and track in _TRACKING_INDEX:
            rec["phone"] = PHONES[TRACKING[_TRACKING_INDEX[track]][1]]
        rec.update(fields)
        if "status" in fields and fields["status"] != STATUSES[0] and "duration" not in fields:
            rec["duration"] = 0
            rec["revenue"] = 0.0
        rec["revenue"] = round(float(rec["revenue"]), 2)
        if not allow_lookalike and self._collides(t, self._key(rec)):
            self.ts_by_id.pop()
            raise ValueError(f"a call with the same key already exists: {self._key(rec)}")
        self._overrides[cid] = rec
        self._insert_sorted([(t, cid)])
        self._add_to_daily(t, *self._outcome(cid))
        self._touch()
        return dict(rec)

    def update_calls(self, n: int) -> list[dict[str, Any]]:
        """Change status, duration and revenue of ``n`` existing calls, deterministically."""
        self._mutations += 1
        rng = _rng(f"optico-update-{self.seed}-{self._mutations}")
        total = len(self.ts_by_id)
        chosen = sorted(
            rng.sample(range(total), min(n, total)), key=lambda c: (self.ts_by_id[c], c)
        )
        out: list[dict[str, Any]] = []
        for cid in chosen:
            current = self.record(cid)
            old_duration, old_cents = self._outcome(cid)
            status = rng.choice([s for s in STATUSES if s != current["status"]])
            duration = rng.randint(10, 1200) if status == STATUSES[0] else 0
            cents = rng.choice((0, 0, 2990, 7500, 15000)) if status == STATUSES[0] else 0
            override = self._overrides.setdefault(cid, {})
            override.update(status=status, duration=duration, revenue=cents / 100)
            t = self.ts_by_id[cid]
            self._add_to_daily(t, old_duration, old_cents, sign=-1)
            self._add_to_daily(t, duration, cents)
            out.append(self.record(cid))
        self._touch()
        return out
