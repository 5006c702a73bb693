"""How each CPython test_asyncio module is made to run on the loop under test.

There are three ways a module of `test.test_asyncio` gets its event loop, and
each gets its own treatment:

1. Mixins with a loop factory method (`create_event_loop`, or `new_loop` for
   `functional.FunctionalTestCaseMixin`). CPython instantiates them once per
   selector (select/poll/epoll/kqueue/proactor). We keep exactly one concrete
   class per mixin (the epoll one, or the "Selector" one), subclass it under a
   neutral name with the factory replaced by the loop under test, and drop the
   per-selector siblings. Both sides (evioloop and the stock loop) run that
   same subclass, so test ids match.

2. Everything that asks asyncio for a loop: `asyncio.new_event_loop()`,
   `asyncio.run()`, `asyncio.Runner()`, `unittest.IsolatedAsyncioTestCase`,
   `policy.new_event_loop()`. The worker installs the loop under test through
   the policy (evioloop.EventLoopPolicy, also as `asyncio.DefaultEventLoopPolicy`
   so that `set_event_loop_policy(None)`, which most modules call in
   tearDownModule and some tests call in tearDown, falls back to it too).

3. Tests that instantiate the stock loop explicitly (`asyncio.SelectorEventLoop()`)
   or use `test_utils.TestLoop` (a mock loop with virtual time, used to test
   Task/Future/transport classes, not the loop). Two modules hand a mocked
   `asyncio.BaseEventLoop()` to otherwise loop-agnostic tests (test_runners,
   test_pep492); MODULE_HOOKS gives them a real loop under test. Where the stock loop is
   instantiated in a setUp and the test is about behaviour evioloop inherits or
   overrides (signals, unix sockets), the setUp is run with
   `asyncio.SelectorEventLoop` patched to the loop under test (`SETUP_PATCH`).
   TestLoop tests are left alone: they still run, but the worker records which
   loops every test created and run.py reports tests that never created the
   loop under test in a separate column instead of counting them as passes.

Everything here is plain data plus `build_suite()`; run.py's worker calls it.
"""
import asyncio
import inspect
import unittest
from unittest import mock

# Classes that only exist for other platforms/selectors; dropped on both sides.
_SELECTOR_SIBLINGS = ('SelectEventLoopTests', 'PollEventLoopTests',
                      'KqueueEventLoopTests', 'ProactorEventLoopTests')

# module -> {original class name: (new class name, factory method name)}
REPLACE = {
    'test_events': {'EPollEventLoopTests': ('EventLoopTests', 'create_event_loop')},
    'test_sock_lowlevel': {'EPollEventLoopTests': ('SockTests', 'create_event_loop')},
    'test_sendfile': {'EPollEventLoopTests': ('SendfileTests', 'create_event_loop')},
    'test_buffered_proto': {
        'BufferedProtocolSelectorTests': ('BufferedProtocolTests', 'new_loop')},
    'test_server': {'SelectorStartServerTests': ('StartServerTests', 'new_loop')},
    'test_sslproto': {'SelectorStartTLSTests': ('StartTLSTests', 'new_loop')},
}

# module -> class names not run at all (Windows-only, or per-selector copies of
# a class kept through REPLACE).
DROP = {
    'test_events': _SELECTOR_SIBLINGS,
    'test_sock_lowlevel': _SELECTOR_SIBLINGS,
    'test_sendfile': _SELECTOR_SIBLINGS,
    'test_buffered_proto': ('BufferedProtocolProactorTests',),
    'test_server': ('ProactorStartServerTests',),
    'test_sslproto': ('ProactorStartTLSTests',),
    'test_subprocess': ('SubprocessProactorTests',),
}

# module -> classes whose setUp does `self.loop = asyncio.SelectorEventLoop()`:
# on evioloop the setUp runs with that name patched to the loop factory.
SETUP_PATCH = {
    'test_unix_events': ('SelectorEventLoopSignalTests',
                         'SelectorEventLoopUnixSocketTests'),
}


def _module_classes(mod):
    """The TestCase classes defined in mod, in source order."""
    classes = []
    for name, obj in vars(mod).items():
        if (inspect.isclass(obj) and issubclass(obj, unittest.TestCase)
                and obj.__module__ == mod.__name__ and name == obj.__name__):
            classes.append(obj)
    return classes


def _subclass(cls, name, attrs):
    attrs = dict(attrs)
    attrs['__module__'] = cls.__module__
    attrs['__qualname__'] = name
    return type(name, (cls,), attrs)


def _replace_factory(cls, name, method, factory):
    def make_loop(self):
        return factory()
    make_loop.__name__ = method
    return _subclass(cls, name, {method: make_loop})


def _patch_setup(cls, factory):
    orig_setup = cls.setUp

    def setUp(self):
        with mock.patch.object(asyncio, 'SelectorEventLoop', factory):
            orig_setup(self)
    return _subclass(cls, cls.__name__, {'setUp': setUp})


def _adapt_test_runners(mod, factory):
    """test_runners' BaseTest hands asyncio.run()/Runner a mocked
    `asyncio.BaseEventLoop()` through a TestPolicy; give it a real loop of the
    kind under test, still recording that shutdown_asyncgens() ran."""
    def new_loop(self):
        loop = factory()
        loop.shutdown_ag_run = False
        real_shutdown_asyncgens = loop.shutdown_asyncgens

        async def shutdown_asyncgens():
            loop.shutdown_ag_run = True
            await real_shutdown_asyncgens()
        loop.shutdown_asyncgens = shutdown_asyncgens
        return loop
    mod.BaseTest.new_loop = new_loop


def _adapt_test_pep492(mod, factory):
    """test_pep492's BaseTest runs its coroutines on a mocked
    `asyncio.BaseEventLoop()`; run them on a real loop of the kind under test."""
    def setUp(self):
        super(mod.BaseTest, self).setUp()
        self.loop = factory()
        self.set_event_loop(self.loop)
    mod.BaseTest.setUp = setUp


MODULE_HOOKS = {
    'test_runners': _adapt_test_runners,
    'test_pep492': _adapt_test_pep492,
}


def describe(module):
    """One line about what is done to module (for --list)."""
    parts = []
    for old, (new, meth) in REPLACE.get(module, {}).items():
        parts.append(f'{old}->{new} ({meth} = loop under test)')
    if module in DROP:
        parts.append('drops ' + ', '.join(DROP[module]))
    if module in SETUP_PATCH:
        parts.append('setUp patched: ' + ', '.join(SETUP_PATCH[module]))
    if module in MODULE_HOOKS:
        parts.append(' '.join((MODULE_HOOKS[module].__doc__ or '').split()).rstrip('.'))
    parts.append('policy-installed loop for the rest')
    return '; '.join(parts)


def build_suite(mod, short_name, factory, *, patch_explicit):
    """A unittest suite for mod with the loop under test wired in.

    factory: a no-argument callable returning a new loop under test.
    patch_explicit: whether to apply SETUP_PATCH (only meaningful when the
    loop under test is not the stock one).
    """
    hook = MODULE_HOOKS.get(short_name)
    if hook is not None:
        hook(mod, factory)
    replace = REPLACE.get(short_name, {})
    drop = set(DROP.get(short_name, ()))
    setup_patch = set(SETUP_PATCH.get(short_name, ())) if patch_explicit else set()
    missing = (set(replace) | set(SETUP_PATCH.get(short_name, ()))) - {
        c.__name__ for c in _module_classes(mod)}
    if missing:
        raise RuntimeError(f'{short_name}: expected classes not found: {sorted(missing)}')

    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for cls in _module_classes(mod):
        name = cls.__name__
        if name in drop:
            continue
        if name in replace:
            new_name, method = replace[name]
            cls = _replace_factory(cls, new_name, method, factory)
        elif name in setup_patch:
            cls = _patch_setup(cls, factory)
        suite.addTests(loader.loadTestsFromTestCase(cls))
    return suite
