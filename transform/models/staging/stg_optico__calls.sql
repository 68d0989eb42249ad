{#- One row per call, typed, in the account's time zone, with its outcome, its landing page
    and campaign parameters, and whether it is the caller's first call. -#}
{%- set calls = source('optico', 'calls') -%}
{%- set columns = optico_columns(calls) -%}
{%- set zone = optico_var('optico_timezone') -%}

with loaded as (

    select
        {{ optico_account(columns) }} as account,
        cast(call_id as {{ dbt.type_string() }}) as call_id,
        {{ optico_utc_timestamp('start_date', columns.get('start_date')) }} as start_at_utc,
        nullif(trim(caller), '') as caller,
        nullif(trim(tracking_number), '') as tracking_number,
        nullif(trim(phone), '') as phone,
        nullif(trim(trigger_type), '') as trigger_type,
        nullif(trim(source), '') as source,
        nullif(trim(referer), '') as referer,
        nullif(trim(keyword), '') as keyword,
        nullif(trim(url), '') as url,
        nullif(call_path, '') as call_path,
        status,
        cast(duration as {{ dbt.type_int() }}) as duration,
        cast(revenue as decimal(18, 4)) as revenue,
        nullif(keypad, '') as keypad,
        cast(is_redirect as boolean) as is_redirect,
        cast(expired_redirect as boolean) as expired_redirect,
        nullif(client_data, '') as client_data,
        nullif(visit_id, '') as visit_id
    from {{ calls }}

),

parsed as (

    select
        account,
        call_id,
        start_at_utc,
        {{ optico_local_timestamp('start_at_utc', zone) }} as start_at_local,
        caller,
        tracking_number,
        phone,
        trigger_type,
        source,
        referer,
        keyword,
        url,
        {{ optico_landing_page('url') }} as landing_page,
        {{ optico_query_param('url', 'utm_source') }} as utm_source,
        {{ optico_query_param('url', 'utm_medium') }} as utm_medium,
        {{ optico_query_param('url', 'utm_campaign') }} as utm_campaign,
        {{ optico_query_param('url', 'utm_term') }} as utm_term,
        {{ optico_query_param('url', 'utm_content') }} as utm_content,
        {{ optico_query_param('url', 'gclid') }} as gclid,
        call_path,
        {{ optico_count_lines('call_path') }} as pages_viewed,
        status,
        {{ optico_outcome('status') }} as outcome,
        duration,
        revenue,
        keypad,
        is_redirect,
        expired_redirect,
        client_data,
        visit_id
    from loaded

)

select
    account,
    call_id,
    start_at_utc,
    start_at_local,
    cast(start_at_local as date) as local_date,
    caller,
    tracking_number,
    phone,
    trigger_type,
    source,
    referer,
    keyword,
    url,
    landing_page,
    utm_source,
    utm_medium,
    utm_campaign,
    utm_term,
    utm_content,
    gclid,
    call_path,
    pages_viewed,
    status,
    outcome,
    outcome = 'answered' as is_answered,
    duration,
    revenue,
    keypad,
    is_redirect,
    expired_redirect,
    client_data,
    visit_id,
    case
        when caller is null then null
        else row_number() over (
            partition by account, caller order by start_at_utc, call_id
        ) = 1
    end as is_first_call
from parsed
