{#- One place for the project's vars: --vars wins, then an environment variable, then a
    default that follows the loader's own settings. -#}
{% macro optico_var(name) -%}
  {%- if name == 'optico_schema' -%}
    {%- set loader_schema = env_var('TARGET_DUCKDB_DEFAULT_TARGET_SCHEMA', '') if target.type == 'duckdb'
        else env_var('TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA', '') -%}
    {%- set fallback = env_var('DBT_OPTICO_SCHEMA', '') or loader_schema or 'optico' -%}
  {%- elif name == 'optico_calls_table' -%}
    {%- set fallback = env_var('DBT_OPTICO_CALLS_TABLE', '') or 'calls' -%}
  {%- elif name == 'optico_daily_calls_table' -%}
    {%- set fallback = env_var('DBT_OPTICO_DAILY_CALLS_TABLE', '') or 'daily_calls' -%}
  {%- elif name == 'optico_account' -%}
    {%- set fallback = env_var('DBT_OPTICO_ACCOUNT', '') or 'default' -%}
  {%- elif name == 'optico_timezone' -%}
    {%- set fallback = env_var('DBT_OPTICO_TIMEZONE', '') or env_var('TAP_OPTICO_TIMEZONE', '') or 'Europe/Paris' -%}
  {%- else -%}
    {{ exceptions.raise_compiler_error("unknown optico var " ~ name) }}
  {%- endif -%}
  {{- return(var(name, fallback)) -}}
{%- endmacro %}


{#- A SQL string literal. -#}
{% macro optico_literal(value) -%}
  '{{ value | string | replace("'", "''") }}'
{%- endmacro %}


{#- {lower-case column name: data type} of a relation, empty while parsing. -#}
{% macro optico_columns(relation) -%}
  {%- set found = {} -%}
  {%- if execute -%}
    {%- for column in adapter.get_columns_in_relation(relation) -%}
      {%- do found.update({column.name | lower: column.data_type | lower}) -%}
    {%- endfor -%}
  {%- endif -%}
  {{- return(found) -}}
{%- endmacro %}


{#- The account of each row: the loaded `account` column when the table has one (the tap's
    multi-account shape), else the optico_account var (single-account loads). -#}
{% macro optico_account(columns) -%}
  {%- if 'account' in columns -%}
    coalesce(cast(account as {{ dbt.type_string() }}), {{ optico_literal(optico_var('optico_account')) }})
  {%- else -%}
    cast({{ optico_literal(optico_var('optico_account')) }} as {{ dbt.type_string() }})
  {%- endif -%}
{%- endmacro %}
