{#- Per account, source, keyword and campaign (utm_campaign) over the whole range: the
    same measures, the callers new to the account, and the first and last day seen. -#}
select
    account,
    {{ optico_label('source') }} as source,
    {{ optico_label('keyword') }} as keyword,
    {{ optico_label('utm_campaign') }} as campaign,
    {{ optico_call_measures() }},
    sum(case when is_first_call then 1 else 0 end) as first_calls,
    min(local_date) as first_call_date,
    max(local_date) as last_call_date
from {{ ref('stg_optico__calls') }}
group by
    account,
    {{ optico_label('source') }},
    {{ optico_label('keyword') }},
    {{ optico_label('utm_campaign') }}
