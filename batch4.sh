H="timeout 200 /work/main/.venv/bin/python /tmp/sigtest/h.py"
$H --name L_j2_int_12 --cmd "run nb --jobs 2" --delay 12 --sig INT
$H --name L_j2_term_3 --cmd "run nb --jobs 2" --delay 3 --sig TERM
$H --name L_ver_int_1.5 --cmd "verify rec --jobs 2 --force" --delay 1.5 --sig INT
$H --name L_rec_term_okg --cmd "record rec --jobs 2" --wait-stdout "ok  rec/g_rec2" --delay 0 --sig TERM
$H --name L_thread_int --cmd "run nb --jobs 2" --delay 10 --sig INT --thread
$H --name L_grp_term_twice --cmd "run nb --jobs 2" --delay 8 --sig TERM --group --second 0.3
