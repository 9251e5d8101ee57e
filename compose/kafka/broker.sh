#!/bin/bash
# One node of the compose Kafka cluster: KRaft, broker + controller in one process (3 nodes,
# replication factor 3, min ISR 2). Clients and brokers authenticate with SASL/SCRAM-SHA-512;
# the controller listener uses SASL/PLAIN (SCRAM credentials live in the metadata log the
# controllers serve, so they cannot guard it). The super user `admin` is written into the
# storage at format time; the init job (init.sh) adds one principal per service and its ACLs.
set -euo pipefail
: "${KAFKA_NODE_ID:?}" "${KAFKA_CLUSTER_ID:?}" "${KAFKA_ADMIN_PASSWORD:?}"
VOTERS="${KAFKA_VOTERS:-1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093}"
HOST="kafka-${KAFKA_NODE_ID}"
CONF=/tmp/server.properties
SCRAM=org.apache.kafka.common.security.scram.ScramLoginModule
PLAIN=org.apache.kafka.common.security.plain.PlainLoginModule
PASS="${KAFKA_ADMIN_PASSWORD}"
cat > "$CONF" <<PROPERTIES
process.roles=broker,controller
node.id=${KAFKA_NODE_ID}
controller.quorum.voters=${VOTERS}
listeners=CLIENT://:9092,INTERNAL://:19092,CONTROLLER://:9093
advertised.listeners=CLIENT://${HOST}:9092,INTERNAL://${HOST}:19092
listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=INTERNAL
controller.listener.names=CONTROLLER
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=${PLAIN} required username="admin" password="${PASS}" user_admin="${PASS}";
listener.name.internal.scram-sha-512.sasl.jaas.config=${SCRAM} required username="admin" password="${PASS}";
listener.name.client.scram-sha-512.sasl.jaas.config=${SCRAM} required;
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
allow.everyone.if.no.acl.found=false
auto.create.topics.enable=false
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
unclean.leader.election.enable=false
num.partitions=3
log.dirs=/var/lib/kafka/data
log.retention.hours=168
log.segment.bytes=268435456
message.max.bytes=8388608
replica.fetch.max.bytes=8388608
group.initial.rebalance.delay.ms=3000
PROPERTIES
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted -t "$KAFKA_CLUSTER_ID" -c "$CONF" \
  --add-scram "SCRAM-SHA-512=[name=admin,password=${PASS}]"
exec /opt/kafka/bin/kafka-server-start.sh "$CONF"
