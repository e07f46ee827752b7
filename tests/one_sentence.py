"""The contract of every failure a user causes: exit status 2, no traceback, one sentence on stderr."""
from utils.errors import run_cli


def expect_one_sentence(main, argv, capsys, *fragments):
    """``main(argv)`` through run_cli ends with exit code 2 and one sentence on stderr holding ``fragments``;
    argument errors (argparse's exit) count the same."""
    try:
        code = run_cli(main, argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    segments = [part.strip() for line in err.splitlines() for part in line.split('\r') if part.strip()]
    progress = [part for part in segments if '%|' in part and 'error: ' not in part]  # tqdm's bars of the run
    # a bar the error was printed behind, without a line break, is cut off
    lines = [part[part.find('error: '):] if '%|' in part else part for part in segments if part not in progress]
    assert code == 2 and 'Traceback' not in err, err
    assert len(lines) == 1 and 'error: ' in lines[0], err
    for fragment in fragments:
        assert fragment in lines[0], err
    return lines[0]
