import asyncio

import evioloop


def test_run_returns_result_on_evioloop():
    async def main():
        return type(asyncio.get_running_loop())

    assert evioloop.run(main()) is evioloop.Loop
