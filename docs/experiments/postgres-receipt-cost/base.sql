SELECT 's' || nextval('zzseq') AS sid \gset
SELECT :sid;
