"""The one stylesheet of skadapt's HTML reports, written into each page (no network, no JavaScript).

A Python string rather than a ``.css`` file, so that it ships inside the package without any
packaging rule. Wide content never widens the page: tables scroll inside their own box
(``.table-wrap``) and figures shrink to the column (``max-width: 100%``).
"""

STYLE = """
:root{--ink:#1f2933;--muted:#52606d;--line:#d9e2ec;--band:#f5f7fa;--accent:#2f6fb2}
*{box-sizing:border-box}
html{background:#fff}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 color:var(--ink);max-width:1100px;margin:0 auto;padding:1.5em 1.25em 3em}
h1{font-size:1.6em;margin:.2em 0 .3em}
h2{font-size:1.2em;margin:1.8em 0 .5em;padding-bottom:.2em;border-bottom:2px solid var(--line)}
h3{font-size:1em;margin:1.2em 0 .4em}
p,li{max-width:75ch}
p.note{color:var(--muted);font-size:.9em}
a{color:var(--accent)}
header.meta{background:var(--band);border:1px solid var(--line);border-radius:6px;padding:.6em 1em}
header.meta dl{display:grid;grid-template-columns:max-content 1fr;gap:.15em 1em;margin:0}
header.meta dt{color:var(--muted)}
header.meta dd{margin:0;overflow-wrap:anywhere}
nav.toc{font-size:.9em;margin:.8em 0}
nav.toc a{margin-right:1em;white-space:nowrap}
.table-wrap{width:fit-content;max-width:100%;overflow-x:auto;margin:.4em 0 1em;border:1px solid var(--line);
 border-radius:6px}
table{border-collapse:collapse;font-size:.9em;font-variant-numeric:tabular-nums}
th,td{padding:.3em .7em;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:var(--band);position:sticky;top:0}
td.num,th.num{text-align:right;white-space:nowrap}
td.text{max-width:40ch;overflow-wrap:anywhere}
tbody tr:nth-child(even){background:#fbfcfd}
tbody tr:hover{background:#eef4fb}
figure{margin:.6em 0 1.2em}
figure img{max-width:100%;height:auto;display:block}
figcaption{color:var(--muted);font-size:.9em}
img.thumb{max-width:96px;height:auto;image-rendering:pixelated;border:1px solid var(--line)}
.sample-text{display:block;min-width:20ch;max-width:50ch;overflow-wrap:anywhere}
.cards{display:flex;flex-wrap:wrap;gap:.6em;margin:.4em 0 1em}
.card{border:1px solid var(--line);border-radius:6px;padding:.4em .9em;min-width:9em}
.card .value{font-size:1.35em;font-weight:600;font-variant-numeric:tabular-nums}
.card .label{color:var(--muted);font-size:.85em}
footer{margin-top:3em;color:var(--muted);font-size:.85em}
"""
