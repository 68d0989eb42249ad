{#- Per account, local day and source: calls, answered, answer rate, duration, revenue. -#}
select
    account,
    local_date,
    {{ optico_label('source') }} as source,
    {{ optico_call_measures() }}
from {{ ref('stg_optico__calls') }}
group by account, local_date, {{ optico_label('source') }}
