#!/usr/bin/env bash
# `make test`'s set-up for the attention page's tests: Debian's Chromium (driven headless over the DevTools
# protocol) and a font with Chinese glyphs (WenQuanYi Micro Hei, 4 MB), installed where missing and apt-get and
# root allow. It never fails the build: without them those tests skip and say why.
set -u
packages=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
  || command -v google-chrome >/dev/null 2>&1 || packages+=(chromium)
have_font=0
for p in fonts-noto-cjk fonts-wqy-microhei fonts-wqy-zenhei; do
  dpkg -s "$p" >/dev/null 2>&1 && have_font=1
done
[ "$have_font" = 1 ] || ls /usr/share/fonts/*/*/*CJK* /usr/share/fonts/*/wqy* >/dev/null 2>&1 || packages+=(fonts-wqy-microhei)
[ ${#packages[@]} = 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_browser: ${packages[*]} missing and cannot be installed here (needs root and apt-get); those tests skip"
  exit 0
fi
echo "ensure_browser: installing ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive
install() { timeout 600 apt-get install -y -q --no-install-recommends "${packages[@]}" >/tmp/ensure_browser.log 2>&1; }
install || { timeout 300 apt-get update -q >>/tmp/ensure_browser.log 2>&1 && install; } \
  || echo "ensure_browser: apt-get could not install ${packages[*]} (see /tmp/ensure_browser.log); those tests skip"
exit 0
