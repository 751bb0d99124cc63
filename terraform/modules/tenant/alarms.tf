################################################################################
# Alarms by tier: the application's error rate and p99 latency for this tenant (the
# tier's thresholds), and for a dedicated database its CPU, free storage and
# connections. Each notifies the platform's topic when it fires and when it clears.
################################################################################

locals {
  alarms         = var.alarms != null
  alarm_actions  = local.alarms && try(var.alarms.topic_arn, null) != null ? [var.alarms.topic_arn] : []
  app_dimensions = { TenantId = var.tenant_id, Tier = var.tier }
}

resource "aws_cloudwatch_metric_alarm" "error_rate" {
  count = local.alarms ? 1 : 0

  alarm_name          = "${local.name}-error-rate"
  alarm_description   = "Tenant ${var.tenant_id} (${var.tier}): more than ${var.alarms.error_rate_percent}% of requests failed in 3 of the last 5 minutes."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarms.error_rate_percent
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  # No traffic is not an error.
  treat_missing_data = "notBreaching"
  alarm_actions      = local.alarm_actions
  ok_actions         = local.alarm_actions

  metric_query {
    id          = "rate"
    expression  = "100 * errors / requests"
    label       = "Error rate (%)"
    return_data = true
  }

  metric_query {
    id = "errors"
    metric {
      namespace   = var.alarms.namespace
      metric_name = "Errors"
      dimensions  = local.app_dimensions
      period      = 60
      stat        = "Sum"
    }
  }

  metric_query {
    id = "requests"
    metric {
      namespace   = var.alarms.namespace
      metric_name = "Requests"
      dimensions  = local.app_dimensions
      period      = 60
      stat        = "Sum"
    }
  }

  tags = local.tags
}

resource "aws_cloudwatch_metric_alarm" "latency_p99" {
  count = local.alarms ? 1 : 0

  alarm_name          = "${local.name}-latency-p99"
  alarm_description   = "Tenant ${var.tenant_id} (${var.tier}): p99 request latency above ${var.alarms.p99_latency_ms} ms in 3 of the last 5 minutes."
  namespace           = var.alarms.namespace
  metric_name         = "Latency"
  dimensions          = local.app_dimensions
  extended_statistic  = "p99"
  period              = 60
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarms.p99_latency_ms
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

locals {
  db_alarms = local.alarms && local.dedicated ? {
    # name = [metric, statistic, operator, threshold]
    cpu = ["CPUUtilization", "Average", "GreaterThanThreshold", 80]
    # Bytes: a fifth of the allocated storage left.
    free-storage = ["FreeStorageSpace", "Minimum", "LessThanThreshold", var.db_allocated_storage * 1024 * 1024 * 1024 / 5]
    connections  = ["DatabaseConnections", "Maximum", "GreaterThanThreshold", var.alarms.db_connections]
  } : {}
}

resource "aws_cloudwatch_metric_alarm" "db" {
  for_each = local.db_alarms

  alarm_name          = "${local.name}-db-${each.key}"
  alarm_description   = "Tenant ${var.tenant_id}: dedicated database ${each.value[0]} ${each.value[2] == "LessThanThreshold" ? "below" : "above"} ${each.value[3]} for 10 minutes."
  namespace           = "AWS/RDS"
  metric_name         = each.value[0]
  dimensions          = { DBInstanceIdentifier = local.name }
  statistic           = each.value[1]
  period              = 300
  comparison_operator = each.value[2]
  threshold           = each.value[3]
  evaluation_periods  = 2
  treat_missing_data  = "missing"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}
