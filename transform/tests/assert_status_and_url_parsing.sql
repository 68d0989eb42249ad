{#- The parsing macros on fixed cases, on the adapter at hand: outcome from French (and
    English) statuses whatever the case and accents, query parameters decoded, landing page
    without query or fragment, pages counted per line. -#}
with cases as (

    select * from (values
        ('succès', 'answered', 'https://a.fr/p?utm_term=plombier+paris%20%C3%A9t%C3%A9&gclid=Cj0x#top',
            'plombier paris été', 'Cj0x', 'https://a.fr/p', 'https://a.fr/' || chr(10) || 'https://a.fr/p', 2),
        ('SUCCES', 'answered', 'https://a.fr/?GCLID=abc&UTM_TERM=x%2By%26z', 'x+y&z', 'abc', 'https://a.fr/',
            'https://a.fr/' || chr(10), 1),
        (' Occupé ', 'busy', 'https://a.fr/devis', null, null, 'https://a.fr/devis', '', 0),
        ('aucune réponse', 'no_answer', 'https://a.fr/?utm_term=100%&gclid=', '100%', null, 'https://a.fr/',
            null, 0),
        ('AUCUNE_REPONSE', 'no_answer', 'https://a.fr/?utm_term=%E9t%C3', '%E9t%C3', null, 'https://a.fr/',
            'a' || chr(13) || chr(10) || chr(10) || 'b' || chr(10) || 'c', 3),
        ('messagerie', 'other', '', null, null, null, 'x', 1),
        (null, 'other', null, null, null, null, null, 0)
    ) as rows_ (status, outcome, url, utm_term, gclid, landing_page, call_path, pages)

),

parsed as (

    select
        cases.*,
        {{ optico_outcome('status') }} as outcome_parsed,
        {{ optico_query_param('url', 'utm_term') }} as utm_term_parsed,
        {{ optico_query_param('url', 'gclid') }} as gclid_parsed,
        {{ optico_landing_page('url') }} as landing_page_parsed,
        {{ optico_count_lines('call_path') }} as pages_parsed
    from cases

)

select *
from parsed
where outcome_parsed <> outcome
    or utm_term_parsed is distinct from utm_term
    or gclid_parsed is distinct from gclid
    or landing_page_parsed is distinct from landing_page
    or pages_parsed <> pages
