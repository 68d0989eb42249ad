{#- The tap emits start_date in UTC. Loaders store it as a naive timestamp holding UTC
    (target-postgres, target-duckdb), as timestamptz, or as ISO text with its offset. Each
    becomes a naive timestamp of UTC wall time, with no reliance on the session's TimeZone:
    AT TIME ZONE on a naive value reads it in the zone named, on a timestamptz it gives the
    wall time in that zone, in PostgreSQL and DuckDB alike. -#}
{% macro optico_utc_timestamp(column, data_type) -%}
  {%- set kind = (data_type or '') | lower -%}
  {%- if 'with time zone' in kind or kind in ('timestamptz', 'timestamp_tz') -%}
    ({{ column }} at time zone 'UTC')
  {%- elif kind.startswith('timestamp') or kind.startswith('datetime') -%}
    cast({{ column }} as timestamp)
  {%- else -%}
    (cast({{ column }} as {{ optico_timestamptz_type() }}) at time zone 'UTC')
  {%- endif -%}
{%- endmacro %}


{#- A naive UTC timestamp as naive wall time in `zone`. -#}
{% macro optico_local_timestamp(utc_expression, zone) -%}
  (({{ utc_expression }}) at time zone 'UTC') at time zone {{ optico_literal(zone) }}
{%- endmacro %}


{% macro optico_timestamptz_type() -%}
  {{ return(adapter.dispatch('optico_timestamptz_type', 'optico')()) }}
{%- endmacro %}

{% macro default__optico_timestamptz_type() -%}
  timestamp with time zone
{%- endmacro %}
