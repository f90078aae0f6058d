-- The table of bench_text, and the functions that make its rows. The functions live in
-- pg_temp, so they vanish with the session and the dumps hold the table alone.
--
-- pgbench's tables are mostly blank filler, which every method shrinks ~30-fold; this table is
-- closer to what applications store: running text whose words follow a Zipf-like law (a few
-- very frequent short words, a long tail of rare ones), names and e-mail addresses,
-- timestamps, amounts, a jsonb document per row and a UUID that does not compress at all.
-- Every value comes from a seeded hash of the row number, so the rows are the same whatever
-- the plan and on every run.
CREATE TABLE messages (
    id bigint NOT NULL,
    request_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    author text NOT NULL,
    status text NOT NULL,
    amount numeric(10,2) NOT NULL,
    subject text NOT NULL,
    body text NOT NULL,
    attrs jsonb NOT NULL
);

-- Uniform in [0, 1), from 48 bits of a seeded hash of key.
CREATE FUNCTION pg_temp.uniform(key bigint, seed int) RETURNS float8
IMMUTABLE LANGUAGE sql AS
$$ SELECT (hashint8extended(key, seed) & 281474976710655)::float8 / 281474976710656.0 $$;

-- A rank in 1..n-1 with P(rank) roughly proportional to 1/rank.
CREATE FUNCTION pg_temp.zipf(key bigint, seed int, n int) RETURNS int
IMMUTABLE LANGUAGE sql AS
$$ SELECT floor(power(n::float8, pg_temp.uniform(key, seed)))::int $$;

-- The word of a rank: the 100 most frequent are common English words, the others two or three
-- of 40 syllables.
CREATE FUNCTION pg_temp.word(rank int) RETURNS text
IMMUTABLE LANGUAGE sql AS
$$ SELECT CASE WHEN rank <= 100 THEN
     ('{the,of,and,to,a,in,is,that,for,it,as,was,with,be,by,on,not,he,this,are,or,his,from,at,
        which,but,have,an,had,they,you,were,their,one,all,we,can,her,has,there,been,if,more,
        when,will,would,who,so,no,she,other,its,may,these,what,them,than,some,him,time,into,
        only,do,out,also,could,about,two,our,then,first,new,any,my,like,over,me,such,most,made,
        after,just,where,system,data,report,order,customer,account,server,update,request}'::text[])[rank]
   ELSE
     ('{ka,ren,to,mi,lo,sa,ver,ion,ing,er,an,con,tra,pro,de,ble,ment,ly,pa,ri,
        ta,no,ve,la,min,sto,gen,al,im,por,cal,ter,ne,ro,si,da,tu,mar,fi,est}'::text[])[1 + rank % 40]
     || ('{ka,ren,to,mi,lo,sa,ver,ion,ing,er,an,con,tra,pro,de,ble,ment,ly,pa,ri,
           ta,no,ve,la,min,sto,gen,al,im,por,cal,ter,ne,ro,si,da,tu,mar,fi,est}'::text[])[1 + (rank / 40) % 40]
     || CASE WHEN rank >= 1600 THEN
          ('{ka,ren,to,mi,lo,sa,ver,ion,ing,er,an,con,tra,pro,de,ble,ment,ly,pa,ri,
             ta,no,ve,la,min,sto,gen,al,im,por,cal,ter,ne,ro,si,da,tu,mar,fi,est}'::text[])[1 + (rank / 1600) % 40]
        ELSE '' END
   END $$;
