"""The docs stay true: every command in a code block of README.md and docs/*.md is checked as far as it can be
without running it (each --Flag exists in the parser of the script or module it is passed to, each experiment name
given to test.sh / train.sh exists), every file of the repository the docs name or link exists, no path of this
project's own workspace appears, and the results tables of README.md and docs/REPRODUCTION.md are those of the
committed result files."""
import argparse
import importlib
import re
import shlex

import pytest

from shell import REPO
from utils.experiments import results_table

DOCS = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]
SCRIPTS = {'script_training.py': 'training', 'script_testing.py': 'testing', 'script_eval_video.py': 'testing'}
# repository files and folders the docs may name in prose or commands (a path under one of these must exist)
REPO_PREFIXES = ('models/', 'data/', 'utils/', 'options/', 'tests/', 'docs/', 'memae_models/README', '.ci/')
TOP_FILES = ('script_training.py', 'script_testing.py', 'script_eval_video.py', 'test.sh', 'train.sh',
             'requirements.txt', 'LICENSE', 'setup.cfg', 'pytest.ini')


class Captured(Exception):
    def __init__(self, parser):
        super().__init__()
        self.parser = parser


def option_strings(parser):
    """Every option string of ``parser`` and of its sub-parsers."""
    found = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action.choices, dict):  # sub-commands
            for sub in action.choices.values():
                found |= option_strings(sub)
    return found


def module_flags(module, monkeypatch):
    """The option strings of ``python -m module``: its parser, caught as ``main`` asks it to parse (nothing runs)."""
    def capture(self, *args, **kwargs):
        raise Captured(self)
    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, 'parse_args', capture)
        patch.setattr(argparse.ArgumentParser, 'parse_known_args', capture)
        with pytest.raises(Captured) as caught:
            importlib.import_module(module).main(['x'])
    return option_strings(caught.value.parser)


def script_flags(kind):
    from options import TestOptions, TrainOptions
    return option_strings((TrainOptions if kind == 'training' else TestOptions)().parser)


def code_blocks(text):
    """The fenced code blocks of a Markdown text, with continuation lines joined."""
    blocks = re.findall(r'^```[a-z]*\n(.*?)^```', text, flags=re.S | re.M)
    return [block.replace('\\\n', ' ') for block in blocks]


def inline_commands(text):
    """Code spans in the prose that are whole commands of ours (``python ...``, ``bash ...``), placeholders
    (``<...>``, ``...``) left out."""
    spans = re.findall(r'`([^`]+)`', re.sub(r'^```.*?^```', '', text, flags=re.S | re.M))
    return [span for span in spans if re.match(r'^([A-Z_]+=\S+ )*(python|bash|torchrun) ', span)
            and '<' not in span and '...' not in span and '…' not in span]


def commands(text):
    """Each command line of the code blocks (and inline code spans) that runs one of ours: its tokens after any
    VAR=value assignments."""
    found = []
    for block in [*code_blocks(text), *inline_commands(text)]:
        for line in block.splitlines():
            for part in re.split(r';|&&|\|', line):
                try:
                    tokens = shlex.split(part, comments=True)
                except ValueError:
                    continue
                while tokens and re.match(r'^[A-Z_]+=', tokens[0]):
                    tokens = tokens[1:]
                if tokens and tokens[0] in ('python', 'bash', 'torchrun'):
                    found.append(tokens)
    return found


def flags_of(tokens):
    return [t for t in tokens if re.match(r'^--[A-Za-z][\w-]*$', t)]


def check_command(tokens, monkeypatch, cache):
    """A list of what is wrong with one command (empty when nothing is)."""
    problems = []

    def flags(key, load):
        if key not in cache:
            cache[key] = load()
        return cache[key]

    def unknown(given, valid, where):
        return [f'{flag} is no flag of {where}' for flag in given if flag not in valid]

    if tokens[0] == 'torchrun':
        tokens = ['python', *tokens[next(i for i, t in enumerate(tokens) if t.endswith('.py')):]]
    if tokens[0] == 'python' and len(tokens) > 1 and tokens[1] in SCRIPTS:
        problems += unknown(flags_of(tokens[2:]), flags(SCRIPTS[tokens[1]], lambda: script_flags(SCRIPTS[tokens[1]])),
                            tokens[1])
    elif tokens[:2] == ['python', '-m'] and len(tokens) > 2:
        module = tokens[2]
        if module == 'utils.experiments.settings':
            from utils.experiments.settings import EXPERIMENTS
            if tokens[3:4] and tokens[3] not in (*EXPERIMENTS, '--usage', 'NAME'):
                problems.append(f'unknown experiment {tokens[3]}')
        elif module == 'mutmut' or module == 'pytest':
            pass
        else:
            valid = flags(module, lambda: module_flags(module, monkeypatch))
            if module in ('utils.experiments.validation', 'utils.gpu_job'):  # pass other flags on to training
                valid = valid | flags('training', lambda: script_flags('training'))
            problems += unknown(flags_of(tokens[3:]), valid, module)
    elif tokens[0] == 'bash' and len(tokens) > 1 and tokens[1] in ('test.sh', 'train.sh'):
        from utils.experiments.settings import DATA_NAMES, EXPERIMENTS
        kind = 'testing' if tokens[1] == 'test.sh' else 'training'
        name = tokens[2] if len(tokens) > 2 and not tokens[2].startswith('-') else None
        rest = tokens[3:] if name else tokens[2:]
        if name and name.startswith('ablation_') and tokens[1] == 'train.sh':
            data = name[len('ablation_'):]
            if data not in (*DATA_NAMES, 'D', 'DATA'):
                problems.append(f'unknown ablation data set {data}')
            valid = flags('utils.experiments.ablation', lambda: module_flags('utils.experiments.ablation',
                                                                             monkeypatch))
            problems += unknown(flags_of(rest), valid | flags(kind, lambda: script_flags(kind)), 'the sweep')
        else:
            if name and name not in EXPERIMENTS and name not in ('EXPERIMENT',):
                problems.append(f'unknown experiment {name} for {tokens[1]}')
            problems += unknown([f for f in flags_of(rest) if f != '--help'], flags(kind, lambda: script_flags(kind)),
                                tokens[1])
    return problems


def repository_paths(text):
    """Paths of the repository that ``text`` names: Markdown link targets and code spans that look like ours."""
    paths = []
    for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', text):
        if '://' not in target:
            paths.append(('link', target))
    for span in re.findall(r'`([^`\s]+)`', text):
        span = span.rstrip('.,;:')
        if span.startswith(REPO_PREFIXES) and '<' not in span and '*' not in span and '…' not in span \
                and '{' not in span and not span.endswith('/'):
            paths.append(('file', span.split('::')[0]))
        elif span in TOP_FILES:
            paths.append(('file', span))
    return paths


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: p.name)
def test_every_documented_command_uses_real_flags_and_experiments(doc, monkeypatch):
    cache = {}
    problems = [f'`{shlex.join(c)}`: {p}' for c in commands(doc.read_text()) for p in
                check_command(c, monkeypatch, cache)]
    assert problems == []


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: p.name)
def test_every_named_repository_file_exists_and_no_workspace_path_appears(doc):
    text = doc.read_text()
    assert '../shared' not in text  # this project's workspace, not a user's: /path/to/... instead
    missing = []
    for kind, path in repository_paths(text):
        base = doc.parent if kind == 'link' else REPO
        if not (base / path).exists():
            missing.append(path)
    assert missing == []


def test_the_readme_is_a_user_guide_in_its_size():
    assert len((REPO / 'README.md').read_bytes()) <= 20_000


def test_the_results_tables_are_those_of_the_committed_result_files():
    """README.md's and docs/REPRODUCTION.md's results tables are what utils/experiments/results_table.py computes
    from memae_models/results/ (tests/test_results_table.py checks the computation)."""
    assert results_table.main(['--check']) == 0


def test_the_checker_catches_a_wrong_flag_experiment_and_path(monkeypatch, tmp_path):
    """The checks above can fail: each kind of mistake, planted in a document, is reported."""
    cache = {}
    wrong = [['python', 'script_testing.py', '--MemDims', '2000'], ['bash', 'test.sh', 'mnist_nope'],
             ['bash', 'train.sh', 'kdd', '--Epochs', '3'], ['python', '-m', 'data.prepare_video', '--source', 'x'],
             ['bash', 'train.sh', 'ablation_kdd', '--variant', 'ae']]
    for tokens in wrong:
        assert check_command(tokens, monkeypatch, cache) != [], tokens
    right = [['python', 'script_testing.py', '--MemDim', '2000'], ['bash', 'test.sh', 'mnist_ae'],
             ['bash', 'train.sh', 'ablation_kdd', '--variants', 'ae', '--UseCUDA', 'False'],
             ['python', '-m', 'utils.benchmark', 'oneclass', '--kdd-runs', '2']]
    for tokens in right:
        assert check_command(tokens, monkeypatch, cache) == [], tokens
    doc = 'See [the data](docs/NOPE.md) and `utils/missing.py`, then run ```x```.'
    assert [path for _, path in repository_paths(doc)] == ['docs/NOPE.md', 'utils/missing.py']
    assert commands('```bash\nDATA_ROOT=/x bash test.sh kdd --Runs 2  # note\n```\n') == [
        ['bash', 'test.sh', 'kdd', '--Runs', '2']]


# The confirmation runs whose weights are shipped (memae_models/README.md): a unit's key columns, and the folder
# prefix of each model
CONFIRMATION_WEIGHTS = {
    'KDDCUP99': (('run',), {'MemAE': 'model_MemAE_FCSpar_', 'MemAE-nonSpar': 'model_MemAE_FC_', 'AE': 'model_AE_FC_'}),
    'MNIST': (('class', 'run'), {'MemAE': 'model_MemAE_Conv2DSpar_', 'MemAE-nonSpar': 'model_MemAE_Conv2D_',
                                 'AE': 'model_AE_Conv2D_'}),
}


def test_the_sha256_table_of_the_shipped_weights_matches_the_files():
    """memae_models/README.md lists every shipped weights file with its sha256: the files and the table agree."""
    import hashlib
    table = dict(re.findall(r'^\| `([^`]+\.pt)` \| `([0-9a-f]{64})` \|$',
                            (REPO / 'memae_models' / 'README.md').read_text(), re.M))
    shipped = sorted((REPO / 'memae_models').glob('*.pt'))
    assert shipped and sorted(table) == [path.name for path in shipped]
    for path in shipped:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == table[path.name], path.name
    # the confirmation runs' weights: a table per data set, a row per unit (its key columns), a column per model,
    # the files in the folders train.sh wrote
    readme = (REPO / 'memae_models' / 'README.md').read_text()
    listed = {}
    digest_cell = r' `([0-9a-f]{64})` \|'
    for dataset, (keys, folders) in CONFIRMATION_WEIGHTS.items():
        assert '| ' + ' | '.join((*keys, *folders)) + ' |' in readme, dataset
        rows = re.findall(r'^\|' + r' (\d+) \|' * len(keys) + digest_cell * len(folders) + '$', readme, re.M)
        assert rows, dataset
        model_folders = []  # exactly one per model, found once per data set
        for prefix in folders.values():
            folder, = (REPO / 'memae_models' / 'confirmation').glob(f'{prefix}{dataset}_*')
            model_folders.append(folder)
        for row in rows:
            unit = ''.join(f'_{key.capitalize()}{value}' for key, value in zip(keys, row))
            for folder, digest in zip(model_folders, row[len(keys):]):
                listed[folder / f'{folder.name[len("model_"):]}{unit}.pt'] = digest
    confirmation = sorted((REPO / 'memae_models' / 'confirmation').rglob('*.pt'))
    assert len(confirmation) == 60 + 90 and sorted(listed) == confirmation
    for path in confirmation:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == listed[path], path.name
