"""`from embedlog.admin import AdminClient, NewTopic, ...`, as `confluent_kafka.admin`."""
from .client._admin import (AdminClient, BrokerMetadata, ClusterMetadata, ConfigEntry, ConfigResource,  # noqa: F401
                     ConfigSource, ConsumerGroupDescription, ConsumerGroupListing,
                     ConsumerGroupTopicPartitions, ListConsumerGroupsResult, MemberAssignment,
                     MemberDescription, NewPartitions, NewTopic, PartitionMetadata, ResourceType,
                     TopicMetadata)
from .client._kafka import KafkaError, KafkaException, TopicPartition  # noqa: F401
