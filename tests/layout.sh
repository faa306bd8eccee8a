#!/bin/bash
# The tree's shape, checked on every `make check` (docs/architecture.md):
#
# - host/ is layered: core/ (the plugin runtime) includes only core/;
#   server/ includes core/ and server/; worker/ and cli/ include core/;
#   a service (tasks/, configs/, tracking/ …) includes core/, server/, its
#   own folder, and of another service only its declared interface, the
#   header named after that service's folder (host/tasks/tasks.h);
#   core/ alone may include libloom's private headers (sdk/libloom/*.h),
#   the code the SDK and the host share;
# - the services' includes of each other form no cycle;
# - a plugin includes only <loom/…> (the SDK), kernels/, and its own folder;
# - no quoted include reaches outside these rules with "../".
#
# Every violation is listed with its file and line.
set -eu
S=${LOOM_TEST_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || true)
[ -n "$PY" ] || { echo "SKIP: python3 is not installed (./bootstrap installs it)"; exit 77; }

exec "$PY" - "$S" <<'EOF'
import os, re, sys

top = sys.argv[1]
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
CORE, SERVER = 'core', 'server'
TOOLS = {'worker', 'cli'}
problems = []

def sources(root):
    for dirpath, _, files in os.walk(os.path.join(top, root)):
        for f in sorted(files):
            if f.endswith(('.c', '.h')) and not f.endswith('-data.c'):
                yield os.path.relpath(os.path.join(dirpath, f), top)

def includes(path):
    with open(os.path.join(top, path), encoding='utf-8', errors='replace') as fp:
        for n, line in enumerate(fp, 1):
            m = INCLUDE.match(line)
            if m:
                yield n, m.group(1), m.group(2)

# ------------------------------------------------------------------ host/
rooms = sorted(d for d in os.listdir(os.path.join(top, 'host'))
               if os.path.isdir(os.path.join(top, 'host', d)) and not d.startswith('.'))
services = [r for r in rooms if r not in (CORE, SERVER) and r not in TOOLS]
uses = {s: set() for s in services}

for path in sources('host'):
    parts = path.split('/')
    room = parts[1] if len(parts) > 2 else None   # None: host/modules.c
    for n, kind, name in includes(path):
        if kind == '<' or name == 'config.h':
            continue
        where = '%s:%d: #include "%s"' % (path, n, name)
        if '..' in name.split('/'):
            problems.append('%s: no ".." in includes; name the room ("host/core/util.h")' % where)
            continue
        if name.startswith('sdk/libloom/') and name.endswith('.h'):
            if room != CORE:
                problems.append('%s: libloom\'s private code reaches the host through core/ '
                                'only' % where)
            continue
        if not name.startswith('host/'):
            if room is None or not os.path.exists(os.path.join(top, 'host', room, name)):
                problems.append('%s: not in %s/; name the room ("host/core/util.h")'
                                % (where, 'host/' + room if room else 'host'))
            continue
        target = name.split('/')[1]
        if room is None:
            if target != SERVER:
                problems.append('%s: host/modules.c knows the modules by name only' % where)
        elif room == CORE:
            if target != CORE:
                problems.append('%s: core/ is the plugin runtime loom-worker shares; it may '
                                'include only core/' % where)
        elif room == SERVER:
            if target not in (CORE, SERVER):
                problems.append('%s: server/ may include core/ and server/; a service joins '
                                'through the module table (host/modules.c)' % where)
        elif room in TOOLS:
            if target != CORE:
                problems.append('%s: %s/ links the plugin runtime only; it may include core/'
                                % (where, room))
        elif target in (CORE, SERVER, room):
            pass
        elif target in services:
            if name != 'host/%s/%s.h' % (target, target):
                problems.append('%s: another service\'s internals; use its interface, '
                                'host/%s/%s.h' % (where, target, target))
            uses[room].add(target)
        else:
            problems.append('%s: %s/ is not a room a service may use' % (where, target))

# the services' uses of each other: no cycle
state = {}
def visit(s, stack):
    state[s] = 'open'
    for t in sorted(uses[s]):
        if state.get(t) == 'open':
            problems.append('services include each other in a circle: %s'
                            % ' -> '.join(stack[stack.index(t):] + [t]))
        elif t not in state:
            visit(t, stack + [t])
    state[s] = 'done'
for s in services:
    if s not in state:
        visit(s, [s])

# ------------------------------------------------------------------ plugins/
for path in sources('plugins'):
    folder = path.split('/')[1]
    for n, kind, name in includes(path):
        if kind == '<' or name == 'config.h':
            continue
        where = '%s:%d: #include "%s"' % (path, n, name)
        own = os.path.join(top, 'plugins', folder, name)
        if name.startswith('kernels/') or ('/' not in name and os.path.exists(own)):
            continue
        if name.startswith('plugins/%s/' % folder):
            continue
        problems.append('%s: a plugin includes <loom/...> (the SDK), kernels/ and its own '
                        'folder only; what it shares with the host belongs in the SDK' % where)

for p in problems:
    print(p)
if problems:
    print('FAIL: %d problem%s with the layout (docs/architecture.md says why)'
          % (len(problems), '' if len(problems) == 1 else 's'))
    sys.exit(1)
print('ok: host/ is layered (%s), %d services include each other without a cycle, plugins '
      'see only the SDK' % (' <- '.join([CORE, SERVER, 'services']), len(services)))
EOF
