{#- URL helpers: the page without its query or fragment, and one decoded query parameter
    (the first occurrence; `+` is a space; %XX escapes of UTF-8 are decoded). -#}
{% macro optico_landing_page(url) -%}
  nullif(split_part(split_part({{ url }}, '#', 1), '?', 1), '')
{%- endmacro %}


{% macro optico_query_param(url, name) -%}
  {{ optico_url_decode(optico_raw_query_param(url, name)) }}
{%- endmacro %}


{#- The raw value of a query parameter (name matched without regard to case), null when
    absent or empty. -#}
{% macro optico_raw_query_param(url, name) -%}
  {{ return(adapter.dispatch('optico_raw_query_param', 'optico')(url, name)) }}
{%- endmacro %}

{% macro default__optico_raw_query_param(url, name) -%}
  nullif(substring({{ url }} from '(?i)[?&]{{ name }}=([^&#]*)'), '')
{%- endmacro %}

{% macro duckdb__optico_raw_query_param(url, name) -%}
  nullif(regexp_extract({{ url }}, '(?i)[?&]{{ name }}=([^&#]*)', 1), '')
{%- endmacro %}


{% macro optico_url_decode(value) -%}
  {{ return(adapter.dispatch('optico_url_decode', 'optico')(value)) }}
{%- endmacro %}

{#- Pieces of a query value: an escape that spells ASCII or one whole UTF-8 character, a
    run of plain characters, or a lone `%`. Only the first kind is decoded, so a malformed
    value (`100%`, Latin-1 `%E9`) is kept as written and never fails the build. -#}
{% macro optico_url_piece_pattern() -%}
  '%[0-7][0-9A-Fa-f]|%[Cc][2-9A-Fa-f]%[89ABab][0-9A-Fa-f]|%[Dd][0-9A-Fa-f]%[89ABab][0-9A-Fa-f]|%[Ee][0-9A-Fa-f](?:%[89ABab][0-9A-Fa-f]){2}|%[Ff][0-4](?:%[89ABab][0-9A-Fa-f]){3}|[^%]+|%'
{%- endmacro %}

{#- PostgreSQL has no URL decoding: the escapes' hex becomes bytes, the rest its UTF-8. -#}
{% macro default__optico_url_decode(value) -%}
  (
    select convert_from(
      string_agg(
        case
          when piece[1] <> '%' and piece[1] like '\%%' escape '\'
            then decode(replace(piece[1], '%', ''), 'hex')
          else convert_to(piece[1], 'UTF8')
        end,
        ''::bytea order by position
      ),
      'UTF8'
    )
    from regexp_matches(replace({{ value }}, '+', ' '), {{ optico_url_piece_pattern() }}, 'g')
      with ordinality as pieces(piece, position)
  )
{%- endmacro %}

{#- DuckDB's url_decode leaves `+` as it is and fails on invalid UTF-8: decode piece by
    piece. -#}
{% macro duckdb__optico_url_decode(value) -%}
  array_to_string(
    list_transform(
      regexp_extract_all(replace({{ value }}, '+', ' '), {{ optico_url_piece_pattern() }}),
      piece -> case when piece <> '%' and starts_with(piece, '%') then url_decode(piece) else piece end
    ),
    ''
  )
{%- endmacro %}


{#- Non-blank lines of a text (the pages of call_path, one per line), 0 for null. -#}
{% macro optico_count_lines(text) -%}
  {{ return(adapter.dispatch('optico_count_lines', 'optico')(text)) }}
{%- endmacro %}

{% macro default__optico_count_lines(text) -%}
  cast((
    select count(*)
    from regexp_split_to_table(coalesce({{ text }}, ''), '\r?\n') as lines(line)
    where trim(line) <> ''
  ) as integer)
{%- endmacro %}

{% macro duckdb__optico_count_lines(text) -%}
  cast(len(list_filter(
    string_split_regex(coalesce({{ text }}, ''), '\r?\n'), line -> trim(line) <> ''
  )) as integer)
{%- endmacro %}
