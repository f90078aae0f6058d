-- $1 rows of bench_text's messages (see text_schema.sql). Each row draws 23-157 words: the
-- first 3-10 are its subject, the rest its body (roughly 500 bytes).
INSERT INTO messages
SELECT g,
       md5(g::text)::uuid,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '37 seconds'
         + (hashint8extended(g, 1) & 31) * interval '1 second',
       (ARRAY['anna','ben','carla','david','emma','felix','greta','hugo','ines','jonas',
              'karin','lukas','maria','nils','olga','paul','rita','sven','tina','uwe'])[pg_temp.zipf(g, 2, 21)]
         || '.' || (ARRAY['smith','meyer','garcia','novak','rossi','dubois','jensen','kowalski',
                          'silva','nguyen','kim','ivanova','brown','muller','jones','lopez',
                          'martin','wagner','fischer','weber'])[1 + (hashint8extended(g, 3) & 1023)::int % 20]
         || '@' || (ARRAY['example.org','mail.example.com','corp.example.net','example.de',
                          'shop.example.io'])[pg_temp.zipf(g, 4, 6)],
       (ARRAY['closed','closed','closed','closed','closed','open','open','pending','archived'])[pg_temp.zipf(g, 5, 10)],
       round((pg_temp.uniform(g, 6) * 500)::numeric, 2),
       initcap(t.subject),
       t.body,
       jsonb_build_object(
         'lang', (ARRAY['en','de','fr','es','it'])[pg_temp.zipf(g, 9, 6)],
         'tags', jsonb_build_array(pg_temp.word(pg_temp.zipf(g, 10, 2000)),
                                   pg_temp.word(pg_temp.zipf(g, 11, 2000))),
         'score', round(pg_temp.uniform(g, 12)::numeric, 3),
         'views', pg_temp.zipf(g, 13, 100000),
         'client', jsonb_build_object(
             'ip', '10.' || (hashint8extended(g, 14) & 255) || '.' || (hashint8extended(g, 15) & 255)
                   || '.' || (hashint8extended(g, 16) & 255),
             'agent', (ARRAY['web/4.2','web/4.3','ios/2.1','android/2.0','api'])[pg_temp.zipf(g, 17, 6)]),
         'pinned', hashint8extended(g, 18) & 63 = 0)
  FROM generate_series(1, $1::bigint) g,
       LATERAL (
         -- No ORDER BY in string_agg: the words arrive in generate_series order (a sort per
         -- row would double the time), which a function scan feeding the aggregate keeps.
         SELECT string_agg(w, ' ') FILTER (WHERE k <= n.subject_words) AS subject,
                string_agg(w, ' ') FILTER (WHERE k > n.subject_words) AS body
           FROM (SELECT 3 + (hashint8extended(g, 7) & 7)::int AS subject_words,
                        20 + (hashint8extended(g, 8) & 127)::int AS body_words) n,
                LATERAL (SELECT k,
                                pg_temp.word(pg_temp.zipf(g * 256 + k, 42, 50000))
                                || CASE hashint8extended(g * 256 + k, 43) & 15
                                     WHEN 0 THEN '.' WHEN 1 THEN ',' ELSE '' END AS w
                           FROM generate_series(1, n.subject_words + n.body_words) k) x
       ) t
