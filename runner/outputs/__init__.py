"""Alerts pushed out of the register: the dispatcher delivers the outbox (`runner.register.outbox`) to an MQTT
broker (`mqtt`) and HTTP webhooks (`webhook`), at least once, in order per camera, nothing lost."""
