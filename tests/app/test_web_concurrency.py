"""The web app serves several requests at once and stays quiet.

(Split from the review-round reliability tests by the promise each case checks.)"""

from reliability_inputs import bank_path, _free_port


def test_the_web_app_serves_several_requests_at_once_and_stays_quiet(bank_path, capsys):
    from reco.app.server import serve

    app = serve([str(bank_path)], port=0 or _free_port(), block=False, concurrency=3)
    try:
        assert app._queue.default_concurrency_limit == 3
    finally:
        app.close()
    printed = capsys.readouterr()
    assert "share=True" not in printed.out + printed.err
