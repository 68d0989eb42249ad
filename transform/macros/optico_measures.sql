{#- The measures every mart shares, over the calls of one group. -#}
{% macro optico_call_measures() -%}
        count(*) as calls,
        sum(case when outcome = 'answered' then 1 else 0 end) as answered,
        cast(sum(case when outcome = 'answered' then 1 else 0 end) as double precision)
            / count(*) as answer_rate,
        sum(coalesce(duration, 0)) as total_duration_s,
        cast(sum(coalesce(duration, 0)) as double precision) / count(*) as avg_duration_s,
        coalesce(sum(revenue), 0) as revenue
{%- endmacro %}


{#- A label for a missing dimension value, so every mart key is not null. -#}
{% macro optico_label(column) -%}
  coalesce({{ column }}, '(none)')
{%- endmacro %}
