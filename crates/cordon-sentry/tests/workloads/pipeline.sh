set -e
cd /tmp
seq 1 2000 | sort -rn | head -3 > top
test "$(cat top | tr '\n' ' ')" = "2000 1999 1998 "
mkdir -p a/b && echo data > a/b/f && cp -r a c && test "$(cat c/b/f)" = data
ln -s a/b/f l && test "$(cat l)" = data
for i in 1 2 3; do echo "$i" >> nums; done
test "$(wc -l < nums)" -eq 3
echo to-stderr > /dev/stderr
find /tmp -name f | sort | tr '\n' ' '
echo
ls /proc/self/fd >/dev/null
(echo sub; false) || echo handled
tar cf t.tar a && mkdir x && tar xf t.tar -C x && test -f x/a/b/f
rm -rf a c x l t.tar
echo pipeline ok
