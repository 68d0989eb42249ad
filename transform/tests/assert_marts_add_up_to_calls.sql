{#- Each mart accounts for every loaded call once: per account, the calls of
    optico_calls_daily and optico_sources add up to the staged calls, and optico_callers to
    those with a caller number. -#}
with staged as (

    select
        account,
        count(*) as calls,
        sum(case when caller is not null then 1 else 0 end) as calls_with_caller
    from {{ ref('stg_optico__calls') }}
    group by account

),

daily as (
    select account, sum(calls) as calls from {{ ref('optico_calls_daily') }} group by account
),

sources as (
    select account, sum(calls) as calls from {{ ref('optico_sources') }} group by account
),

callers as (
    select account, sum(calls) as calls from {{ ref('optico_callers') }} group by account
)

select staged.account, staged.calls, daily.calls as daily_calls,
    sources.calls as sources_calls, callers.calls as callers_calls
from staged
left join daily on daily.account = staged.account
left join sources on sources.account = staged.account
left join callers on callers.account = staged.account
where coalesce(daily.calls, -1) <> staged.calls
    or coalesce(sources.calls, -1) <> staged.calls
    or coalesce(callers.calls, 0) <> staged.calls_with_caller
