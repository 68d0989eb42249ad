{#- The API's own totals per account and local day (group_by_day=true). -#}
{%- set daily = source('optico', 'daily_calls') -%}
{%- set columns = optico_columns(daily) -%}

select
    {{ optico_account(columns) }} as account,
    cast({{ adapter.quote('date') }} as date) as local_date,
    cast(calls as {{ dbt.type_int() }}) as calls,
    cast(duration as {{ dbt.type_bigint() }}) as duration,
    cast(revenue as decimal(18, 4)) as revenue
from {{ daily }}
