"""config.toml plus MEMBERBOT_<SECTION>_<KEY> overrides, validated into typed sections.

A wrong or missing value raises ConfigError with one line naming the key; the CLI prints that
line and exits instead of showing a traceback.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import os
import tomllib
import unicodedata
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "MEMBERBOT_"
DEFAULT_PATH = Path("config.toml")


class ConfigError(Exception):
    """A configuration value is missing or wrong; the message names the key."""


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    reply_timeout: float = 4.0
    max_body_bytes: int = 65536
    max_clock_skew: int = 300


@dataclass
class DatabaseConfig:
    url: str = "sqlite://data/memberbot.db"


@dataclass
class RedisConfig:
    url: str = ""
    prefix: str = "memberbot"  # key prefix: several shops can share one server


@dataclass
class WeChatConfig:
    app_id: str = ""
    app_secret: str = ""
    token: str = ""
    encoding_aes_key: str = ""
    api_base_url: str = "https://api.weixin.qq.com"


@dataclass
class SmsConfig:
    access_key_id: str = ""
    access_key_secret: str = ""
    sign_name: str = ""
    endpoint: str = "dysmsapi.aliyuncs.com"
    template_verify: str = ""
    template_welcome: str = ""
    # If set, Aliyun's push URLs must carry ?token=<push_token> (Aliyun does not sign pushes).
    push_token: str = ""
    # SMS go out only between these local times; later ones wait for the next morning.
    send_from: str = "08:00"
    send_until: str = "21:00"
    # Template for a marketing SMS (campaigns): "${text}回T退订"; its only parameter is text.
    template_marketing: str = ""

    @property
    def window(self) -> tuple[dt.time, dt.time]:
        return dt.time.fromisoformat(self.send_from), dt.time.fromisoformat(self.send_until)


@dataclass
class SecurityConfig:
    data_key: str = ""
    # While rotating: the old key(s), comma-separated, still readable but no longer written.
    previous_keys: str = ""

    @property
    def data_key_bytes(self) -> bytes:
        return base64.b64decode(self.data_key)

    @property
    def previous_key_bytes(self) -> list[bytes]:
        return [base64.b64decode(k) for k in self.previous_keys.split(",") if k.strip()]


@dataclass
class ShopConfig:
    name: str = "示例门店"
    privacy_url: str = "https://example.com/privacy"
    timezone: str = "Asia/Shanghai"
    card_prefix: str = "88"
    welcome_points: int = 100
    resume_after_minutes: int = 30
    # The map link of a [[faq]] answer with a place: {lat}, {lng} and {name} (URL-quoted).
    map_url: str = "https://uri.amap.com/marker?position={lng},{lat}&name={name}"

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


@dataclass
class SmsLimitsConfig:
    code_ttl_seconds: int = 300
    max_attempts: int = 5
    per_minute: int = 1
    per_hour: int = 5
    per_day: int = 10


@dataclass
class SchedulerConfig:
    enabled: bool = True
    birthday_at: str = "09:00"  # local time of the daily birthday job


@dataclass
class BroadcastConfig:
    # A scheduled campaign missed by more than this waits for a manager instead of going out.
    stale_after_minutes: int = 120
    batch_size: int = 500  # members claimed and sent per batch
    concurrency: int = 4  # sends in flight per worker
    # WeChat: message/mass/send calls per minute (60 is WeChat's cap) and openids per call.
    mass_per_minute: int = 60
    mass_batch: int = 10000
    # WeChat lets each follower receive 4 mass messages a month; the rest go by SMS.
    mass_monthly_cap: int = 4
    sms_per_second: int = 50  # Aliyun's default flow control is per account
    max_attempts: int = 5  # transient errors (-1, 45009, flow control) retry with backoff
    # A worker's claim on a batch; renewed while it sends, taken over this long after a crash.
    lease_seconds: int = 90


@dataclass
class BookingConfig:
    slot_minutes: int = 30  # the grid free times start on; service durations are multiples
    horizon_days: int = 14  # members book at most this many days ahead
    min_notice_minutes: int = 60  # ... and at least this long before the start
    # Members cancel or move a booking until this long before it starts (staff any time).
    cancel_before_minutes: int = 120
    reschedule_before_minutes: int = 120
    # This many no-shows within no_show_days and the member books only through staff.
    no_show_limit: int = 3
    no_show_days: int = 90
    offer_minutes: int = 15  # a freed place is held this long for the first on the waitlist
    remind_evening_at: str = "20:00"  # the evening before, local time
    remind_before_minutes: int = 120  # and this long before the start


@dataclass
class ConsoleConfig:
    """The owner's web console (/console), logged in by scanning a QR code with WeChat."""

    idle_minutes: int = 30  # a session unused this long ends
    # Where the console is reached from outside (https://shop.example.com): the login links
    # `memberbot console link` prints start with it, and the session cookie is Secure when it
    # is https. Empty: http://<server.host>:<server.port>.
    base_url: str = ""


@dataclass
class SupportConfig:
    """[service]: a member asking for a person (人工). mode "bot" relays them to the staff on
    duty in chat; "wechat" hands them to WeChat's own customer-service workbench."""

    mode: str = "bot"
    idle_minutes: int = 30  # a conversation left this long closes itself
    hours: str = "每天 10:00-21:00"  # what a member hears when nobody is on duty


@dataclass
class RatingsConfig:
    """[ratings]: members rate a visit (a purchase, a booking marked arrived) 1–5."""

    ask: bool = True  # ask once after each visit, while the customer-service window is open
    days: int = 7  # 评价 rates the last visit at most this many days old
    alert_at_most: int = 2  # a rating this low is sent to the store's managers at once


@dataclass
class ServiceConfig:
    """A service members book: how long it takes, what it costs, who can serve it."""

    code: str
    name: str
    minutes: int
    resources: list[str]  # [[resources]] codes that can serve it
    price: float = 0.0  # yuan, shown to the member
    punch_card: str = ""  # a [[punch_cards]] code whose visits cover it (到店 uses one)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class ResourceConfig:
    """A stylist, a coach, a room or a court. capacity > 1 is a group class: that many places.
    Weekly hours per weekday ("10:00-20:00", "10:00-12:00,13:00-20:00"; empty = closed) and
    closures ("2026-12-25" the whole day, "2026-12-26 14:00-18:00" part of it)."""

    code: str
    name: str
    store: str
    capacity: int = 1
    mon: str = ""
    tue: str = ""
    wed: str = ""
    thu: str = ""
    fri: str = ""
    sat: str = ""
    sun: str = ""
    closed: list[str] = field(default_factory=list)

    def week(self) -> dict[int, str]:
        """ISO weekday (1 = Monday) → its hours text."""
        return {n: getattr(self, day) for n, day in enumerate(WEEKDAYS, start=1)}


@dataclass
class SegmentsConfig:
    # RFM: R, F and M are scored high or low against the members' median ("median") or mean.
    rfm_baseline: str = "median"
    rfm_days: int = 365  # the window F and M count over


@dataclass
class StoreConfig:
    code: str
    name: str


@dataclass
class TierConfig:
    name: str
    min_spend: int  # yuan over the last 12 months
    multiplier: float = 1.0  # points multiplier
    discount: int = 100  # percent of the price, shown to staff (95 = 95折)
    birthday_points: int = 0
    birthday_coupon: str = ""  # a [[coupons]] template code given on the birthday
    birthday_template: str = "birthday.j2"  # the greeting, in templates/messages/


@dataclass
class PointsConfig:
    per_yuan: float = 1.0
    rounding: str = "floor"  # floor | round | ceil
    min_amount: float = 0.0  # yuan; smaller purchases earn nothing
    member_day: int = 0  # ISO weekday 1 (Monday) .. 7 (Sunday); 0 = none
    member_day_multiplier: float = 1.0
    expiry: str = "months"  # months | year_end | never
    expiry_months: int = 12
    expiry_notice_days: int = 7
    void_days: int = 7  # a manager can void a purchase this many days after it
    checkin_points: int = 5
    checkin_streak_days: int = 7
    checkin_streak_bonus: int = 20
    referral_points: int = 200  # to both, after the referred member's first purchase
    max_purchase: int = 100000  # yuan; bigger amounts are refused as typos
    # yuan; a purchase above it is recorded only after the clerk confirms (0: never ask)
    confirm_above: int = 3000


@dataclass
class StoredValueConfig:
    max_topup: int = 50000  # yuan


@dataclass
class TopUpBonusConfig:
    min: int  # yuan
    bonus: int  # yuan


@dataclass
class CouponTemplateConfig:
    code: str
    name: str
    kind: str  # amount_off | threshold | discount | gift
    amount: float = 0.0  # yuan off (amount_off, threshold)
    threshold: float = 0.0  # yuan the purchase must reach
    discount: int = 100  # percent to pay: 88 = 8.8折
    cap: float = 0.0  # yuan; the most a discount takes off (0 = no cap)
    gift: str = ""
    points_cost: int = 0  # > 0: members can buy it with points
    valid_days: int = 0  # valid N days after issue, or between valid_from and valid_until
    valid_from: str = ""
    valid_until: str = ""
    stock: int = 0  # total that may be issued; 0 = unlimited
    per_member: int = 0  # 0 = no limit
    stores: list[str] = field(default_factory=list)  # empty = every store
    exclusive: bool = True


@dataclass
class CouponRewardsConfig:
    welcome: str = ""  # template code issued on registration
    referral: str = ""  # to both, with the referral points


@dataclass
class PunchProductConfig:
    code: str
    name: str
    visits: int
    valid_days: int = 365
    price: float = 0.0  # yuan the card sells for (0: given away, no payment taken)


@dataclass
class FaqConfig:
    """A question members ask (营业时间, 地址): the words that ask it and its answer. A message
    asks it when it contains the topic or a keyword. With an address and coordinates the answer
    is a link card (图文) to a map marker: WeChat cannot send a member a location."""

    topic: str  # what 帮助 lists
    keywords: list[str]
    answer: str = ""
    address: str = ""
    latitude: float | None = None
    longitude: float | None = None
    title: str = ""  # the card's title and the marker's name; default the shop's name
    pic_url: str = ""  # the card's picture
    map_url: str = ""  # default shop.map_url

    @property
    def located(self) -> bool:
        return self.latitude is not None and self.longitude is not None


def fold(text: str) -> str:
    """How [[faq]] keywords and members' messages compare: full-width letters and digits as
    half-width (NFKC), case folded, spaces dropped."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    wechat: WeChatConfig = field(default_factory=WeChatConfig)
    sms: SmsConfig = field(default_factory=SmsConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    shop: ShopConfig = field(default_factory=ShopConfig)
    sms_limits: SmsLimitsConfig = field(default_factory=SmsLimitsConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    broadcast: BroadcastConfig = field(default_factory=BroadcastConfig)
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)
    booking: BookingConfig = field(default_factory=BookingConfig)
    service: SupportConfig = field(default_factory=SupportConfig)
    ratings: RatingsConfig = field(default_factory=RatingsConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    points: PointsConfig = field(default_factory=PointsConfig)
    stored_value: StoredValueConfig = field(default_factory=StoredValueConfig)
    coupon_rewards: CouponRewardsConfig = field(default_factory=CouponRewardsConfig)
    stores: list[StoreConfig] = field(default_factory=list)
    tiers: list[TierConfig] = field(default_factory=lambda: [TierConfig("普通会员", 0)])
    topup_bonus: list[TopUpBonusConfig] = field(default_factory=list)
    punch_cards: list[PunchProductConfig] = field(default_factory=list)
    coupons: list[CouponTemplateConfig] = field(default_factory=list)
    services: list[ServiceConfig] = field(default_factory=list)
    resources: list[ResourceConfig] = field(default_factory=list)
    faq: list[FaqConfig] = field(default_factory=list)
    menu: dict[str, Any] = field(default_factory=dict)
    # Service notices per purpose: [notices.<purpose>] channels (in order), template_id and
    # fields = {ours: theirs} for the template message, sms_template for the SMS.
    notices: dict[str, Any] = field(default_factory=dict)

    def replace(self, **sections: Any) -> Config:
        """A copy with whole sections swapped, e.g. config.replace(database=DatabaseConfig(url))."""
        return dataclasses.replace(self, **sections)


_LISTS = {"stores": StoreConfig, "tiers": TierConfig, "topup_bonus": TopUpBonusConfig,
          "punch_cards": PunchProductConfig, "coupons": CouponTemplateConfig,
          "services": ServiceConfig, "resources": ResourceConfig, "faq": FaqConfig}
_FREE_FORM = ("menu", "notices")
_SECTIONS = {
    f.name: f.type for f in dataclasses.fields(Config)
    if f.name not in _LISTS and f.name not in _FREE_FORM
}


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Read the file (if any), apply environment overrides, validate the basics."""
    environ = dict(os.environ if environ is None else environ)
    raw: dict[str, Any] = {}
    file = Path(path) if path else DEFAULT_PATH
    if file.exists():
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8-sig"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML ({exc})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{file}: not UTF-8 text (save it as UTF-8)") from None
        except OSError as exc:
            raise ConfigError(f"{file}: cannot be read ({exc.strerror})") from None
    elif path:
        raise ConfigError(f"config file {file} does not exist")

    hints = get_type_hints(Config)
    sections: dict[str, Any] = {}
    for name in _SECTIONS:
        cls = hints[name]
        values = raw.get(name, {})
        if not isinstance(values, dict):
            raise ConfigError(f"[{name}] must be a table")
        sections[name] = _build_section(name, cls, values, environ)
    unknown = set(raw) - set(_SECTIONS) - set(_LISTS) - set(_FREE_FORM)
    if unknown:
        raise ConfigError(f"unknown section [{sorted(unknown)[0]}]")
    lists = {}
    for name, cls in _LISTS.items():
        items = raw.get(name, [])
        if not isinstance(items, list):
            raise ConfigError(f"{name}: must be written as [[{name}]] entries")
        lists[name] = [_build_list_item(name, cls, item) for item in items]
    lists["tiers"] = lists["tiers"] or [TierConfig("普通会员", 0)]
    free_form = {name: raw.get(name, {}) for name in _FREE_FORM}
    config = Config(**sections, **lists, **free_form)
    validate_basics(config)
    return config


def _build_section(name: str, cls: type, values: dict[str, Any], environ: dict[str, str]) -> Any:
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"{name}.{key}: unknown key")
        kwargs[key] = _coerce(f"{name}.{key}", hints[key], value)
    for key, typ in hints.items():
        env_name = f"{ENV_PREFIX}{name.upper()}_{key.upper()}"
        if env_name in environ:
            kwargs[key] = _coerce(f"{name}.{key} (from {env_name})", typ, environ[env_name])
    return cls(**kwargs)


def _build_list_item(name: str, cls: type, values: Any) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[[{name}]] entries must be tables")
    hints = get_type_hints(cls)
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in values]
    if missing:
        raise ConfigError(f"[[{name}]] entry is missing {missing[0]!r}")
    unknown = [k for k in values if k not in hints]
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: unknown key")
    return cls(**{k: _coerce(f"{name}.{k}", hints[k], v) for k, v in values.items()})


def _coerce(key: str, typ: Any, value: Any) -> Any:
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            if isinstance(value, bool | float):  # int(8080.7) would silently give 8080
                raise ValueError
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if getattr(typ, "__origin__", None) is list:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError
            return list(value)
        if typ is str:
            if isinstance(value, dt.date):  # TOML has date literals: valid_until = 2026-12-31
                return value.isoformat()
            if not isinstance(value, str | int | float):
                raise ValueError
            return str(value)
    except ValueError:
        expected = getattr(typ, "__name__", str(typ))
        raise ConfigError(f"{key}: expected {expected}, got {value!r}") from None
    return value


def validate_basics(config: Config) -> None:
    """Checks that hold for every command."""
    if not 0 < config.server.port < 65536:
        raise ConfigError(f"server.port: {config.server.port} is not a TCP port")
    if not 0.5 <= config.server.reply_timeout <= 4.5:
        raise ConfigError("server.reply_timeout: must be between 0.5 and 4.5 seconds")
    url = config.database.url
    if not url.startswith(("sqlite://", "postgres://", "postgresql://", "asyncpg://")):
        raise ConfigError(f"database.url: unsupported scheme in {url.split('://')[0]!r}")
    try:
        config.shop.tz  # noqa: B018 - validates the zone name
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"shop.timezone: unknown time zone {config.shop.timezone!r}") from None
    prefix = config.shop.card_prefix
    if not (prefix.isdigit() and 1 <= len(prefix) <= 4):
        raise ConfigError("shop.card_prefix: must be 1 to 4 digits")
    codes = [s.code for s in config.stores]
    if len(codes) != len(set(codes)):
        raise ConfigError("stores.code: store codes must be unique")
    spends = [t.min_spend for t in config.tiers]
    if spends[0] != 0 or spends != sorted(spends) or len(set(spends)) != len(spends):
        raise ConfigError("tiers.min_spend: must start at 0 and strictly increase")
    if any(t.multiplier <= 0 for t in config.tiers):
        raise ConfigError("tiers.multiplier: must be positive")
    if any(not 1 <= t.discount <= 100 for t in config.tiers):
        raise ConfigError("tiers.discount: a percentage from 1 to 100 (95 means 95折)")
    if config.service.mode not in ("bot", "wechat"):
        raise ConfigError("service.mode: one of bot, wechat")
    if config.service.idle_minutes <= 0:
        raise ConfigError("service.idle_minutes: must be positive")
    if config.console.idle_minutes <= 0:
        raise ConfigError("console.idle_minutes: must be positive")
    if config.console.base_url and not config.console.base_url.startswith(("http://",
                                                                           "https://")):
        raise ConfigError("console.base_url: must start with https:// (or http://)")
    points = config.points
    if points.rounding not in ("floor", "round", "ceil"):
        raise ConfigError("points.rounding: one of floor, round, ceil")
    if points.expiry not in ("months", "year_end", "never"):
        raise ConfigError("points.expiry: one of months, year_end, never")
    if not 0 <= points.member_day <= 7:
        raise ConfigError("points.member_day: 0 (none) or an ISO weekday 1..7")
    if points.per_yuan < 0 or points.member_day_multiplier <= 0:
        raise ConfigError("points.per_yuan / member_day_multiplier: must not be negative")
    if points.expiry == "months" and points.expiry_months < 1:
        raise ConfigError("points.expiry_months: at least 1")
    if points.confirm_above < 0:
        raise ConfigError("points.confirm_above: 0 (never ask) or the yuan above which to ask")
    if any(p.price < 0 or round(p.price * 100) != p.price * 100 for p in config.punch_cards):
        raise ConfigError("punch_cards.price: yuan, not negative, at most two decimals")
    codes = [p.code for p in config.punch_cards]
    if len(codes) != len(set(codes)) or any(p.visits < 1 or p.valid_days < 1
                                             for p in config.punch_cards):
        raise ConfigError("punch_cards: codes unique, visits and valid_days at least 1")
    if any(b.min <= 0 or b.bonus < 0 for b in config.topup_bonus):
        raise ConfigError("topup_bonus: min must be positive and bonus not negative")
    for coupon in config.coupons:
        validate_coupon(coupon, {s.code for s in config.stores})
    codes = [c.code for c in config.coupons]
    if len(codes) != len(set(codes)):
        raise ConfigError("coupons.code: template codes must be unique")
    for key, value in (("sms.send_from", config.sms.send_from),
                       ("sms.send_until", config.sms.send_until),
                       ("scheduler.birthday_at", config.scheduler.birthday_at)):
        try:
            dt.time.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"{key}: a local time like 08:00, got {value!r}") from None
    validate_notices(config.notices)
    if config.segments.rfm_baseline not in ("median", "mean"):
        raise ConfigError("segments.rfm_baseline: median or mean")
    for tier in config.tiers:
        if tier.birthday_coupon and tier.birthday_coupon not in codes:
            raise ConfigError(f"tiers.birthday_coupon: no [[coupons]] template "
                              f"{tier.birthday_coupon!r} (tier {tier.name})")
    for reward in ("welcome", "referral"):
        wanted = getattr(config.coupon_rewards, reward)
        if wanted and wanted not in codes:
            raise ConfigError(f"coupon_rewards.{reward}: no [[coupons]] template {wanted!r}")
    validate_booking(config)
    validate_faq(config)


TimeRange = tuple[dt.time, dt.time]


def parse_ranges(text: str) -> list[TimeRange]:
    """Opening hours as written in config.toml and `memberbot booking hours`:
    "10:00-12:00,13:00-20:00" (empty: closed that day). Ranges in order, none overlapping;
    "24:00" ends a range at midnight."""
    ranges: list[TimeRange] = []
    for part in filter(None, (p.strip() for p in text.replace("，", ",").split(","))):
        try:
            start, end = (t.strip() for t in part.split("-"))
            opens = dt.time.fromisoformat(start)
            closes = dt.time.max if end == "24:00" else dt.time.fromisoformat(end)
        except ValueError:
            raise ValueError(f"{part!r} is not a time range like 10:00-20:00") from None
        if closes <= opens or (ranges and opens < ranges[-1][1]):
            raise ValueError(f"{part!r}: ranges must run forward, in order, without overlap")
        ranges.append((opens, closes))
    return ranges


def parse_closure(text: str) -> tuple[dt.date, TimeRange | None]:
    """A closure: "2026-12-25" (the whole day) or "2026-12-26 14:00-18:00"."""
    day, _, hours = text.strip().partition(" ")
    try:
        date = dt.date.fromisoformat(day)
    except ValueError:
        raise ValueError(f"{text!r}: a date like 2026-12-25, optionally with 14:00-18:00") \
            from None
    if not hours.strip():
        return date, None
    ranges = parse_ranges(hours)
    if len(ranges) != 1:
        raise ValueError(f"{text!r}: one time range after the date")
    return date, ranges[0]


def validate_booking(config: Config) -> None:
    b = config.booking
    if not (1 <= b.slot_minutes <= 240 and 1440 % b.slot_minutes == 0):
        raise ConfigError("booking.slot_minutes: a whole divisor of a day, like 15, 30 or 60")
    if min(b.horizon_days, b.no_show_limit, b.no_show_days, b.offer_minutes) < 1 or \
            min(b.min_notice_minutes, b.cancel_before_minutes, b.reschedule_before_minutes,
                b.remind_before_minutes) < 0:
        raise ConfigError("booking: days, limits and minutes must be positive")
    try:
        dt.time.fromisoformat(b.remind_evening_at)
    except ValueError:
        raise ConfigError(f"booking.remind_evening_at: a local time like 20:00, "
                          f"got {b.remind_evening_at!r}") from None
    stores = {s.code for s in config.stores}
    resources = {}
    for r in config.resources:
        where = f"resources.{r.code}"
        if r.code in resources:
            raise ConfigError(f"{where}: resource codes must be unique")
        resources[r.code] = r
        if r.store not in stores:
            raise ConfigError(f"{where}.store: unknown store {r.store!r}")
        if r.capacity < 1:
            raise ConfigError(f"{where}.capacity: at least 1")
        for day, text in zip(WEEKDAYS, r.week().values(), strict=True):
            try:
                parse_ranges(text)
            except ValueError as exc:
                raise ConfigError(f"{where}.{day}: {exc}") from None
        for text in r.closed:
            try:
                parse_closure(text)
            except ValueError as exc:
                raise ConfigError(f"{where}.closed: {exc}") from None
    punch = {p.code for p in config.punch_cards}
    codes = set()
    for s in config.services:
        where = f"services.{s.code}"
        if s.code in codes:
            raise ConfigError(f"{where}: service codes must be unique")
        codes.add(s.code)
        if s.minutes < 1 or s.minutes % b.slot_minutes:
            raise ConfigError(f"{where}.minutes: a multiple of booking.slot_minutes "
                              f"({b.slot_minutes})")
        unknown = [code for code in s.resources if code not in resources]
        if not s.resources or unknown:
            raise ConfigError(f"{where}.resources: [[resources]] codes, "
                              f"unknown {unknown[0]!r}" if unknown else
                              f"{where}.resources: name at least one [[resources]] code")
        if s.price < 0:
            raise ConfigError(f"{where}.price: yuan, not negative")
        if s.punch_card and s.punch_card not in punch:
            raise ConfigError(f"{where}.punch_card: no [[punch_cards]] {s.punch_card!r}")


def validate_faq(config: Config) -> None:
    """[[faq]]: keywords present and each claimed by one entry; a place has an address and
    coordinates in range. (That no keyword is a command word is checked where the commands are
    known: bot/handlers/faq.py, when the app is built.)"""
    owners: dict[str, str] = {}
    for entry in config.faq:
        if not fold(entry.topic):
            raise ConfigError("faq.topic: every [[faq]] entry needs a topic (what 帮助 lists)")
        where = f"faq.{entry.topic}"
        if not entry.keywords or not all(fold(word) for word in entry.keywords):
            raise ConfigError(f"{where}.keywords: at least one keyword, none of them blank")
        for word in dict.fromkeys(fold(w) for w in (entry.topic, *entry.keywords)):
            if word in owners:
                raise ConfigError(f"{where}.keywords: {word!r} is already a keyword (or the "
                                  f"topic) of faq.{owners[word]}")
            owners[word] = entry.topic
        for key in ("latitude", "longitude"):
            value = getattr(entry, key)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int | float)):
                raise ConfigError(f"{where}.{key}: a number of degrees, got {value!r}")
        if (entry.latitude is None) != (entry.longitude is None):
            raise ConfigError(f"{where}: give latitude and longitude together")
        if not entry.located:
            if entry.address:
                raise ConfigError(f"{where}.address: needs latitude and longitude (the map link)")
            if not entry.answer.strip():
                raise ConfigError(f"{where}.answer: what the bot answers, must not be empty")
            continue
        if not -90 <= entry.latitude <= 90:
            raise ConfigError(f"{where}.latitude: -90 to 90 degrees, got {entry.latitude}")
        if not -180 <= entry.longitude <= 180:
            raise ConfigError(f"{where}.longitude: -180 to 180 degrees, got {entry.longitude}")
        if not entry.address.strip():
            raise ConfigError(f"{where}.address: a place's answer shows its address")
        key = f"{where}.map_url" if entry.map_url else "shop.map_url"
        template = entry.map_url or config.shop.map_url
        try:
            template.format(lat=0, lng=0, name="")
        except (KeyError, IndexError, ValueError):
            raise ConfigError(f"{key}: a URL with {{lat}}, {{lng}} and {{name}} in it, "
                              f"got {template!r}") from None
        for url_key, url in ((key, template), (f"{where}.pic_url", entry.pic_url)):
            if url and not url.startswith(("https://", "http://")):
                raise ConfigError(f"{url_key}: an http(s) URL, got {url!r}")
        if not template:
            raise ConfigError(f"{key}: the map link of a place, must not be empty")


# The channels a notice can take ([notices.<purpose>] channels), and the order they are tried in
# when a purpose names none: a customer-service message while the member's 48 h window lasts,
# else the purpose's template message, else an SMS (REFERENCE §5.2–5.3).
NOTICE_CHANNELS = ("wechat_cs", "wechat_tpl", "sms")


def validate_notices(notices: dict[str, Any]) -> None:
    for purpose, notice in notices.items():
        if not isinstance(notice, dict):
            raise ConfigError(f"notices.{purpose}: must be a table")
        channels = notice.get("channels", NOTICE_CHANNELS)
        if not isinstance(channels, list | tuple) or not channels or \
                any(c not in NOTICE_CHANNELS for c in channels) or \
                len(set(channels)) != len(channels):
            raise ConfigError(f"notices.{purpose}.channels: a list of {', '.join(NOTICE_CHANNELS)}"
                              f" (each at most once), got {channels!r}")
        for table in ("fields", "sms_params"):
            mapping = notice.get(table, {})
            if not isinstance(mapping, dict) or \
                    not all(isinstance(v, str) for v in mapping.values()):
                raise ConfigError(f"notices.{purpose}.{table}: a table of our field = their name")
        for text in ("template_id", "sms_template"):
            if not isinstance(notice.get(text, ""), str):
                raise ConfigError(f"notices.{purpose}.{text}: a string")


def validate_coupon(c: CouponTemplateConfig, stores: set[str]) -> None:
    where = f"coupons.{c.code}"
    if c.kind not in ("amount_off", "threshold", "discount", "gift"):
        raise ConfigError(f"{where}.kind: one of amount_off, threshold, discount, gift")
    if c.kind in ("amount_off", "threshold") and c.amount <= 0:
        raise ConfigError(f"{where}.amount: the yuan taken off must be positive")
    if c.kind == "threshold" and c.threshold < c.amount:
        raise ConfigError(f"{where}.threshold: must be at least the amount taken off")
    if c.kind == "discount" and not 1 <= c.discount <= 99:
        raise ConfigError(f"{where}.discount: percent to pay, 1 to 99 (88 = 8.8折)")
    if c.kind == "gift" and not c.gift:
        raise ConfigError(f"{where}.gift: say what the gift is")
    fixed = bool(c.valid_from or c.valid_until)
    if (c.valid_days > 0) == fixed:
        raise ConfigError(f"{where}: give either valid_days or valid_from and valid_until")
    if fixed:
        try:
            start, end = dt.date.fromisoformat(c.valid_from), dt.date.fromisoformat(c.valid_until)
        except ValueError:
            raise ConfigError(f"{where}.valid_from/valid_until: dates like 2026-12-31") from None
        if end < start:
            raise ConfigError(f"{where}.valid_until: before valid_from")
    unknown = set(c.stores) - stores
    if unknown:
        raise ConfigError(f"{where}.stores: unknown store {sorted(unknown)[0]!r}")
    if min(c.stock, c.per_member, c.points_cost) < 0:
        raise ConfigError(f"{where}: stock, per_member and points_cost cannot be negative")


def _env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def _missing(section: str, key: str) -> ConfigError:
    # Secrets live in the environment (README, Secrets), never in config.toml: name the variable.
    return ConfigError(f"{section}.{key}: missing (set the environment variable "
                       f"{_env_name(section, key)})")


def validate_for_database(config: Config) -> None:
    """Checks for commands that read or write members: the data key that encrypts phones."""
    if not config.security.data_key:
        raise ConfigError(
            "security.data_key: missing (set the environment variable "
            f"{_env_name('security', 'data_key')}; generate one with `memberbot security "
            "new-key`)"
        )
    try:
        if len(base64.b64decode(config.security.data_key, validate=True)) != 32:
            raise ValueError
    except (binascii.Error, ValueError):
        raise ConfigError("security.data_key: must be base64 of exactly 32 bytes") from None
    try:
        if any(len(k) != 32 for k in config.security.previous_key_bytes):
            raise ValueError
    except (binascii.Error, ValueError):
        raise ConfigError(
            "security.previous_keys: comma-separated base64 keys of 32 bytes") from None


def validate_for_wechat_api(config: Config) -> None:
    """Checks for commands that call the WeChat API (and read the database): menu, qrcode."""
    for key in ("app_id", "app_secret"):
        if not getattr(config.wechat, key):
            raise _missing("wechat", key)
    validate_for_database(config)


def validate_for_serving(config: Config) -> None:
    """Checks for commands that answer WeChat and store phone numbers: serve, worker."""
    wechat = config.wechat
    for key in ("app_id", "app_secret", "token", "encoding_aes_key"):
        if not getattr(wechat, key):
            raise _missing("wechat", key)
    if len(wechat.encoding_aes_key) != 43:
        raise ConfigError("wechat.encoding_aes_key: must be exactly 43 characters")
    try:
        if len(base64.b64decode(wechat.encoding_aes_key + "=")) != 32:
            raise ValueError
    except (binascii.Error, ValueError):
        raise ConfigError("wechat.encoding_aes_key: not a valid EncodingAESKey") from None
    if not 3 <= len(wechat.token) <= 32 or not wechat.token.isalnum():
        raise ConfigError("wechat.token: must be 3 to 32 letters or digits")
    validate_for_database(config)
    if not config.stores:
        raise ConfigError("stores: define at least one [[stores]] entry")
