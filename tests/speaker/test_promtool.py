"""Prometheus's own checker on what we ship: ``promtool check rules`` on the alert
rules, ``promtool test rules`` on the scrape alerts, and ``promtool check metrics`` on
the exposition a running speaker serves over HTTP: clean except MetalLB's own name
quirks (its FRR mode's counters have no ``_total`` suffix, three of its gauges have
one; listed in docs/metrics.md). promtool comes with Debian's ``prometheus`` package
(scripts/setup.sh); without it these tests skip, and fail under CI=true."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import trio

from speaker.looplag import LoopMonitor
from speaker.metrics import serve_metrics
from speaker.peer import FailoverRecord
from tests.helpers import IN_CI
from tests.helpers.metrics import fetch, samples, value
from tests.helpers.running import running_speaker, wait_until

pytestmark = pytest.mark.usefixtures("bfd_not_held")  # tests/speaker/conftest.py


RULES = Path(__file__).resolve().parents[2] / "docs" / "prometheus-alerts.yaml"

#: What ``promtool check metrics`` says of MetalLB's names, which we keep exactly.
METALLB_QUIRKS = {
    *(f'{name} counter metrics should have "_total" suffix' for name in (
        "metallb_bgp_opens_sent", "metallb_bgp_opens_received",
        "metallb_bgp_notifications_sent", "metallb_bgp_updates_total_received",
        "metallb_bgp_keepalives_sent", "metallb_bgp_keepalives_received",
        "metallb_bgp_route_refresh_sent", "metallb_bgp_total_sent",
        "metallb_bgp_total_received", "metallb_bfd_control_packet_input",
        "metallb_bfd_control_packet_output", "metallb_bfd_echo_packet_input",
        "metallb_bfd_echo_packet_output", "metallb_bfd_session_up_events",
        "metallb_bfd_session_down_events", "metallb_bfd_zebra_notifications",
    )),
    *(f'{name} non-counter metrics should not have "_total" suffix' for name in (
        "metallb_bgp_announced_prefixes_total", "metallb_allocator_addresses_in_use_total",
        "metallb_allocator_addresses_total",
    )),
}  # fmt: skip


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        reason = "promtool is not installed (Debian package prometheus; scripts/setup.sh)"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return path


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_checks_the_alert_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_the_scrape_alerts_fire_for_a_speaker_gone_and_for_no_speaker(
    promtool: str, tmp_path: Path
) -> None:
    """promtool's rule unit tests: lb-1 stops answering at minute 2, so
    SpeakerScrapeFailing fires 1 minute later; with no target of the job at all,
    SpeakerMetricsAbsent fires after 5 minutes."""
    (tmp_path / "alerts.yaml").write_text(RULES.read_text())
    (tmp_path / "test.yaml").write_text(textwrap.dedent("""\
        rule_files: [alerts.yaml]
        evaluation_interval: 15s
        tests:
          - interval: 15s
            input_series:
              - series: 'up{job="speaker", instance="lb-1:7472"}'
                values: '1x7 0x12'
              - series: 'up{job="speaker", instance="lb-2:7472"}'
                values: '1x19'
            alert_rule_test:
              - {eval_time: 2m30s, alertname: SpeakerScrapeFailing, exp_alerts: []}
              - eval_time: 3m15s
                alertname: SpeakerScrapeFailing
                exp_alerts:
                  - exp_labels: {severity: critical, job: speaker, instance: "lb-1:7472"}
                    exp_annotations:
                      summary: "speaker on lb-1:7472 is not being scraped"
                      description: >-
                        Prometheus has failed to scrape lb-1:7472 for 1 minute: the
                        speaker is not running, or its [metrics] address is not
                        reachable. Without it nothing else here can fire for that
                        node. `systemctl status speaker`, `journalctl -u speaker`,
                        `speaker show status`.
              - {eval_time: 4m, alertname: SpeakerMetricsAbsent, exp_alerts: []}
          - interval: 1m
            input_series:
              - series: 'up{job="other", instance="x:9100"}'
                values: '1x10'
            alert_rule_test:
              - {eval_time: 4m, alertname: SpeakerMetricsAbsent, exp_alerts: []}
              - eval_time: 6m
                alertname: SpeakerMetricsAbsent
                exp_alerts:
                  - exp_labels: {severity: critical, job: speaker}
                    exp_annotations:
                      summary: "no speaker is scraped at all"
                      description: >-
                        Prometheus has no target in the job "speaker" (service
                        discovery lost the nodes, or the job was renamed): every
                        speaker alert is blind. Check the scrape configuration
                        (docs/metrics.md).
        """))  # fmt: skip
    result = subprocess.run(
        [promtool, "test", "rules", "test.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


async def test_promtool_finds_only_metallb_s_quirks_in_a_running_speaker_s_metrics(
    promtool: str, tmp_path: Path
) -> None:
    monitor = LoopMonitor()
    async with running_speaker(tmp_path) as spk, trio.open_nursery() as nursery:
        nursery.start_soon(monitor.run)
        listeners = await nursery.start(
            lambda task_status: serve_metrics(
                spk.speaker, "127.0.0.1", 0, monitor=monitor, task_status=task_status
            )
        )
        base = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/metrics"
        # Histograms with observations, rejects by reason: every kind of series.
        spk.speaker.peers["r1"].failovers.append(FailoverRecord(
            detected_at=1.0, cancelled_at=1.0, notification_at=1.0004, closed_at=1.0006,
            diag="CONTROL_DETECTION_TIME_EXPIRED"))  # fmt: skip
        spk.speaker.peers["r1"].reannounce_delays.append(4.2)

        async def bfd_up() -> bool:
            _, _, text = await trio.to_thread.run_sync(fetch, base)
            return value(text, "metallb_bfd_session_up", peer="127.0.0.1") == 1

        await wait_until(bfd_up, timeout=15)
        status, _, text = await trio.to_thread.run_sync(fetch, base)
        nursery.cancel_scope.cancel()
    assert status == 200
    found = samples(text)
    for name in ("speaker_event_loop_lag_seconds_bucket",
                 "speaker_bfd_detection_to_teardown_seconds_bucket",
                 "metallb_allocator_addresses_total", "speaker_service_announced"):  # fmt: skip
        assert found.get(name), name
    result = run(promtool, "check", "metrics", stdin=text)
    said = {line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()}
    assert said == METALLB_QUIRKS, (said - METALLB_QUIRKS, METALLB_QUIRKS - said)
