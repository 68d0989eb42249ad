{{ config(severity='warn') }}
{#- Per account and day, duration and revenue summed over the calls equal the API's daily
    totals (to the cent). A warning: the API does not document that its daily totals are
    sums over the same calls. -#}
with summed as (

    select account, local_date, sum(total_duration_s) as duration, sum(revenue) as revenue
    from {{ ref('optico_calls_daily') }}
    group by account, local_date

)

select summed.account, summed.local_date, summed.duration, daily.duration as duration_reported,
    summed.revenue, daily.revenue as revenue_reported
from summed
inner join {{ ref('stg_optico__daily_calls') }} as daily
    on daily.account = summed.account and daily.local_date = summed.local_date
where coalesce(summed.duration, 0) <> coalesce(daily.duration, 0)
    or abs(coalesce(summed.revenue, 0) - coalesce(daily.revenue, 0)) >= 0.005
