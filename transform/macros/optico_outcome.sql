{#- The call's outcome from the API's French status ("succès", "occupé", "aucune réponse"),
    tolerant of case, accents, spacing, underscores and the English words; anything else
    (or nothing) is `other`. -#}
{% macro optico_normalized_status(status) -%}
  trim(regexp_replace(
    translate(lower({{ status }}), 'àâäáãéèêëíìîïóòôöõúùûüçñ_-', 'aaaaaeeeeiiiiooooouuuucn  '),
    '\s+', ' ', 'g'
  ))
{%- endmacro %}


{% macro optico_outcome(status) -%}
  {%- set normalized = optico_normalized_status(status) -%}
  case
    when {{ normalized }} in ('succes', 'success', 'successful', 'answered', 'repondu', 'decroche')
      then 'answered'
    when {{ normalized }} in ('occupe', 'busy')
      then 'busy'
    when {{ normalized }} in (
      'aucune reponse', 'pas de reponse', 'sans reponse', 'non repondu', 'no answer',
      'not answered', 'unanswered'
    )
      then 'no_answer'
    else 'other'
  end
{%- endmacro %}
