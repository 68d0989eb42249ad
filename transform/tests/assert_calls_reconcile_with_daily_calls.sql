{#- Per account and day, the calls in optico_calls_daily (one per loaded call) equal the
    API's own daily_calls totals: a lost or a duplicated call fails the build. -#}
with counted as (

    select account, local_date, sum(calls) as calls
    from {{ ref('optico_calls_daily') }}
    group by account, local_date

),

reported as (

    select account, local_date, calls
    from {{ ref('stg_optico__daily_calls') }}

)

select
    coalesce(counted.account, reported.account) as account,
    coalesce(counted.local_date, reported.local_date) as local_date,
    counted.calls as calls_counted,
    reported.calls as calls_reported
from counted
full outer join reported
    on counted.account = reported.account and counted.local_date = reported.local_date
where coalesce(counted.calls, 0) <> coalesce(reported.calls, 0)
