{#- Per account and caller number: first and last call, calls, answered, revenue, the source
    of the first call, and whether the caller called more than once. Calls without a caller
    number are left out. -#}
select
    account,
    caller,
    min(start_at_utc) as first_call_at_utc,
    max(start_at_utc) as last_call_at_utc,
    min(start_at_local) as first_call_at_local,
    max(start_at_local) as last_call_at_local,
    count(*) as calls,
    sum(case when outcome = 'answered' then 1 else 0 end) as answered,
    coalesce(sum(revenue), 0) as revenue,
    sum(coalesce(duration, 0)) as total_duration_s,
    max(case when is_first_call then {{ optico_label('source') }} end) as first_source,
    count(*) > 1 as is_repeat_caller
from {{ ref('stg_optico__calls') }}
where caller is not null
group by account, caller
