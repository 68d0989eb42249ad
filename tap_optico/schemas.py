"""The JSON schemas of the two streams, tied to the Data API's documented fields.

Every record carries `account`, the name of the Optico account it was read from:
two clients' calls or days never share a primary key in a target.
"""

from __future__ import annotations

from singer_sdk import typing as th

from tap_optico.records import EXTRA_FIELD

ACCOUNT = th.Property(
    "account",
    th.StringType,
    required=True,
    description="The Optico account: `accounts[].name`, or `account_name` for a single key.",
)

CALLS = th.PropertiesList(
    ACCOUNT,
    th.Property(
        "call_id",
        th.StringType,
        required=True,
        description=(
            "Stable id of the call: a BLAKE2b digest of its local start time, caller, "
            "tracking number and destination phone, look-alikes numbered (the API has none)."
        ),
    ),
    th.Property(
        "start_date",
        th.DateTimeType,
        description="When the call started, in UTC (the API's local time read in `timezone`).",
    ),
    th.Property("caller", th.StringType, description="The caller's phone number."),
    th.Property("tracking_number", th.StringType, description="The tracking number called."),
    th.Property(
        "phone", th.StringType, description="The destination number the call was forwarded to."
    ),
    th.Property(
        "trigger_type",
        th.StringType,
        description=(
            'What triggered the call: "1" normal, "2" call back, "3" automatic rule, '
            '"4" manual invitation.'
        ),
    ),
    th.Property(
        "source",
        th.StringType,
        description='Visit source, e.g. "adwords", "Google", "traffic direct".',
    ),
    th.Property("url", th.StringType, description="URL where the tracking number was displayed."),
    th.Property("referer", th.StringType, description="Referring domain."),
    th.Property("keyword", th.StringType, description="Keyword that generated the visit."),
    th.Property(
        "call_path",
        th.StringType,
        description="Pages viewed during the visit, one per line, oldest first.",
    ),
    th.Property(
        "status",
        th.StringType,
        description='Call status as the API writes it: "succès", "occupé", "aucune réponse"…',
    ),
    th.Property("keypad", th.StringType, description="Keys pressed during the call."),
    th.Property("client_data", th.StringType, description="Data attached to the phone numbers."),
    th.Property("visit_id", th.StringType, description="Links the call to a website visit."),
    th.Property("duration", th.IntegerType, description="Call duration in seconds."),
    th.Property("revenue", th.NumberType, description="Estimated revenue of the call."),
    th.Property(
        "is_redirect", th.BooleanType, description="Redirected because there was no answer."
    ),
    th.Property(
        "expired_redirect",
        th.BooleanType,
        description="Redirected because the tracking number had expired.",
    ),
    th.Property(
        EXTRA_FIELD,
        th.ObjectType(additional_properties=True),
        description="Fields the API sent that this version of the tap does not know, as sent.",
    ),
).to_dict()

DAILY_CALLS = th.PropertiesList(
    ACCOUNT,
    th.Property("date", th.DateType, required=True, description="The local calendar day."),
    th.Property("calls", th.IntegerType, description="Number of calls that day."),
    th.Property(
        "duration", th.IntegerType, description="Total call duration that day, in seconds."
    ),
    th.Property("revenue", th.NumberType, description="Total estimated revenue that day."),
).to_dict()

# The SDK names draft 2020-12, which draft-4 targets refuse ("Schema version must be
# Draft 4"); these schemas use nothing past draft 4, so they name no draft at all.
for _schema in (CALLS, DAILY_CALLS):
    _schema.pop("$schema", None)
