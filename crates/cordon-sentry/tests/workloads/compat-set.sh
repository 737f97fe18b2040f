# The compatibility set, run the same way in every sandbox under comparison: one line per
# item, "pass NAME" or "FAIL NAME". Needs /w (this directory) and /prog/prog (prog.c built
# statically).
NET=loopback python3 /w/compat.py > /tmp/py.out 2> /tmp/py.err
for p in files json sqlite3 subprocess threads signals unix-sockets tcp-loopback; do
    if grep -qx "ok $p" /tmp/py.out; then echo "pass python-$p"; else echo "FAIL python-$p"; fi
done
if sh /w/pipeline.sh 2> /dev/null | tail -n 1 | grep -qx "pipeline ok"; then
    echo "pass pipeline-dash"
else
    echo "FAIL pipeline-dash"
fi
rm -f /tmp/top /tmp/nums # what the first run leaves
if busybox sh /w/pipeline.sh 2> /dev/null | tail -n 1 | grep -qx "pipeline ok"; then
    echo "pass pipeline-busybox"
else
    echo "FAIL pipeline-busybox"
fi
if [ "$(/prog/prog)" = "c ok" ]; then echo "pass c-program"; else echo "FAIL c-program"; fi
